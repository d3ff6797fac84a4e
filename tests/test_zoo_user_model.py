"""A user's .keras file in the zoo: safe loading, kinds, preprocessing, registry resolution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.filters.zoo.user_model import load_user_model, user_model_name
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
    with pytest.raises(ModelUnavailableError, match="Cannot load"):
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
