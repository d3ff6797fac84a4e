"""A user's .keras file in the zoo: safe loading, kinds, preprocessing, registry resolution."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.filters.zoo.user_model import EMBEDDED_SETTINGS, load_user_model, user_model_name
from neurofilters.plugin_host.cli.main import main
from neurofilters.plugin_host import ModelUnavailableError, ParameterError


def _tiny_classifier(path: Path, classes: int = 10) -> Path:
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="scores")(x)
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_classifier(tmp_path_factory.mktemp("user") / "My_Net.keras")


def test_a_classifier_file_loads_through_the_registry(classifier_file: Path) -> None:
    spec = plugin_host.get_registry().get_model(os.fspath(classifier_file))
    assert spec.name == "my-net"
    model = spec.loader()()
    assert (model.kind, model.name, model.input_size, model.min_size) == ("classifier", "my-net", None, 32)
    assert model.labels == [f"class {index}" for index in range(10)]
    images = np.random.default_rng(0).random((2, 40, 50, 3), dtype=np.float32)
    expected = np.asarray(model.keras_model(images * 255.0))  # default convention: 0..255
    np.testing.assert_allclose(np.asarray(model.logits_model()(images)), expected, rtol=1e-5, atol=1e-4)
    assert model.resolve_layer("conv") == "conv"
    top = model.classify(images[0], top=3)
    assert len(top) == 3 and abs(sum(p for *_, p in model.classify(images[0], top=10)) - 1) < 1e-6


def test_a_settings_file_sets_preprocessing_and_labels(tmp_path: Path) -> None:
    path = _tiny_classifier(tmp_path / "pets.keras", classes=2)
    path.with_name("pets.keras.json").write_text(json.dumps({"preprocessing": "-1-1", "labels": ["cat, kitty", "dog"]}))
    model = load_user_model(path)
    assert model.labels == ["cat, kitty", "dog"]
    images = np.full((1, 33, 33, 3), 0.25, np.float32)
    np.testing.assert_allclose(np.asarray(model.preprocess(images)), images * 2 - 1)
    np.testing.assert_allclose(np.asarray(load_user_model(path, preprocessing="0-1").preprocess(images)), images)
    with pytest.raises(ParameterError, match="Received: preprocessing='bgr'"):
        load_user_model(path, preprocessing="bgr")


def test_a_feature_map_model_is_a_backbone(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Conv2D(4, 3, name="features")(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "backbone.keras")
    model = load_user_model(tmp_path / "backbone.keras")
    assert (model.kind, model.labels, model.min_size) == ("backbone", None, 64)
    assert tuple(model.feature_model(["features"])(np.zeros((1, 64, 64, 3), np.float32))[0].shape) == (1, 62, 62, 4)


def test_safe_mode_refuses_a_lambda_layer(tmp_path: Path) -> None:
    import keras

    marker = tmp_path / "ran"
    inputs = keras.Input((8, 8, 3))
    touching = eval(f"lambda x: (__import__('pathlib').Path({os.fspath(marker)!r}).touch(), x)[1]")  # noqa: S307
    outputs = keras.layers.Lambda(touching)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    marker.unlink()  # building the model ran the lambda once
    with pytest.raises(ModelUnavailableError, match="Refusing to load .*lambda.keras: it contains Python code"):
        load_user_model(tmp_path / "lambda.keras")
    assert not marker.exists()
    keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=False)  # what safe mode prevents
    assert marker.exists()


def test_non_image_models_and_bad_paths_are_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((5,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "table.keras")
    with pytest.raises(ModelUnavailableError, match=r"expected one image input of shape \(None, H, W, 3\)"):
        load_user_model(tmp_path / "table.keras")
    with pytest.raises(ModelUnavailableError, match="Received: '.*missing.keras'"):
        load_user_model(tmp_path / "missing.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelUnavailableError, match="broken.keras is not a readable Keras archive"):
        load_user_model(tmp_path / "broken.keras")


def test_only_existing_keras_files_resolve(tmp_path: Path) -> None:
    registry = plugin_host.get_registry()
    with pytest.raises(plugin_host.RegistryError, match="must end in '.keras' and exist"):
        registry.get_model(os.fspath(tmp_path / "absent.keras"))
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(plugin_host.RegistryError):
        registry.get_model(os.fspath(tmp_path / "weights.h5"))


@pytest.mark.parametrize(("path", "name"), [("a/My_Net.keras", "my-net"), ("3d.keras", "model-3d"), ("__.keras", "model-file")])
def test_user_model_names_are_valid_registry_names(path: str, name: str) -> None:
    assert user_model_name(path) == name


def _with_embedded(source: Path, target: Path, **settings: object) -> Path:
    """A copy of ``source`` whose archive carries ``settings`` as its embedded neurofilters.json."""
    target.write_bytes(source.read_bytes())
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr(EMBEDDED_SETTINGS, json.dumps({"labels": [f"c{i}" for i in range(10)], **settings}))
    return target


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({"image_size": 10**12}, "image_size=1000000000000"),
        ({"image_size": 0}, "image_size=0"),
        ({"image_size": 4096}, "image_size=4096"),
        ({"image_size": 224.5}, "image_size=224.5"),
        ({"image_size": True}, "image_size=true"),
        ({"image_size": "224"}, 'image_size="224"'),
        ({"dream_layers": [["conv", 1e300]]}, "dream_layers=[[\"conv\", 1e+300]]"),
        ({"dream_layers": [["conv", "NaN"]]}, "dream_layers=[[\"conv\", \"NaN\"]]"),
        ({"dream_layers": [["conv", 1.0]] * 65}, "dream_layers=[[\"conv\", 1.0]"),
        ({"dream_layers": "conv"}, 'dream_layers="conv"'),
    ],
)
def test_absurd_embedded_settings_are_refused_like_user_input(
    classifier_file: Path, tmp_path: Path, settings: dict, shown: str
) -> None:
    model = _with_embedded(classifier_file, tmp_path / "odd.keras", **settings)
    key = next(iter(settings))
    with pytest.raises(ParameterError) as caught:
        load_user_model(model)
    message = str(caught.value)
    assert message.startswith(f"{model} ({EMBEDDED_SETTINGS}): {key} must be")
    assert f"Received: {shown}" in message and "\n" not in message
    if key == "image_size":
        assert "between 32 and 1024" in message


def test_a_huge_embedded_image_size_is_one_line_exit_2(classifier_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    model = _with_embedded(classifier_file, tmp_path / "huge.keras", image_size=10**12)
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(photo)
    assert main(["classify", str(photo), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OverflowError" not in err
    assert f"{model} ({EMBEDDED_SETTINGS}): image_size must be an integer between 32 and 1024 (pixels). Received: image_size=1000000000000" in err


def test_a_sane_embedded_size_and_dream_layers_are_kept(classifier_file: Path, tmp_path: Path) -> None:
    model = load_user_model(_with_embedded(classifier_file, tmp_path / "ok.keras", image_size=96, dream_layers=[["conv", 2], ["gone", 1]]))
    assert (model.input_size, tuple(model.default_dream_layers)) == (96, (("conv", 2.0),))


@pytest.mark.parametrize("kind", ["empty", "truncated", "zip without a model"])
def test_an_empty_or_truncated_keras_file_is_one_line(
    classifier_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    from PIL import Image

    model = tmp_path / "cut.keras"
    if kind == "empty":
        model.write_bytes(b"")
    elif kind == "truncated":
        model.write_bytes(classifier_file.read_bytes()[: classifier_file.stat().st_size // 2])
    else:
        with zipfile.ZipFile(model, "w") as archive:
            archive.writestr("notes.txt", "hello")
    size = model.stat().st_size
    with pytest.raises(ModelUnavailableError) as caught:
        load_user_model(model)
    message = str(caught.value)
    assert message.startswith(f"{model} is not a readable Keras archive (size {size} bytes")
    assert "File not found" not in message and "model.save(" in message
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(photo)
    assert main(["classify", str(photo), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is not a readable Keras archive (size {size} bytes" in err and "File not found" not in err



@pytest.fixture(scope="module")
def fixed_size_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A textbook CNN fixed to 64 x 64: convolutions, Flatten, Dense (a user's small network)."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    outputs = keras.layers.Dense(5, name="scores")(keras.layers.Flatten(name="flat")(x))
    path = tmp_path_factory.mktemp("fixed") / "fixed64.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_activation_maps_and_inversion_resize_to_a_fixed_input_size(fixed_size_file: Path) -> None:
    """The photo (90 x 120, not 64 x 64) is resized to the network's input; the output keeps the photo's size."""
    import neurofilters

    photo = np.random.default_rng(3).random((90, 120, 3), dtype=np.float32)
    model = os.fspath(fixed_size_file)
    overlay = neurofilters.apply("activation-maps", photo, model=model, layer="c2", display="overlay", channel=1)
    assert overlay.shape == (90, 120, 3) and np.isfinite(overlay.pixels).all()
    grid = neurofilters.apply("activation-maps", photo, model=model, layer="c2", select="top", count=4)
    assert "4 of 8 channels of c2 (29x29 each)" in grid.summary
    inverted = neurofilters.apply("feature-inversion", photo, model=model, layer="c1", steps=2, work_size=48)
    assert inverted.shape == (90, 120, 3) and np.isfinite(inverted.pixels).all()


def test_an_overlay_on_a_fixed_input_size_lines_up_with_the_photo(tmp_path: Path) -> None:
    """A 1x1 convolution reading the red channel of a left-to-right red ramp: the map follows the ramp across the
    whole width (measured at the working size, the map of the network's 64 x 64 landed in the left part only)."""
    import keras

    import neurofilters

    inputs = keras.Input((64, 64, 3))
    red = keras.layers.Conv2D(1, 1, name="red")
    outputs = red(inputs)
    red.set_weights([np.array([1.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1), np.zeros(1, np.float32)])
    keras.Model(inputs, outputs).save(tmp_path / "red64.keras")
    photo = np.zeros((90, 120, 3), np.float32)
    photo[:, :, 0] = np.linspace(0.0, 1.0, 120, dtype=np.float32)[None, :]
    result = neurofilters.apply("activation-maps", photo, model=os.fspath(tmp_path / "red64.keras"), layer="red",
                                display="overlay", channel=0, opacity=1.0).pixels
    assert result.shape == (90, 120, 3)
    # Full opacity at the right edge (the map's maximum); half way across, the map is about half, so the photo shows.
    assert np.abs(result[:, 60] - result[:, 119]).max() > 0.05
    columns = result.mean(axis=(0, 2))
    assert np.corrcoef(np.arange(120)[:100], np.abs(columns[:100] - columns[119]))[0, 1] < -0.9
