"""Fully connected units wherever a unit can be named: saliency, hallucinate, ``explore similar``, receptive fields.

A real Keras model saved as a real ``.keras`` file (convolutions, global pooling, a hidden
``Dense`` layer with ReLU, dropout, the logits), trained for a few steps on scikit-image's
photos so its units tell them apart, is loaded through the registry as a user would.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters
from neurofilters.plugin_host import ModelCache, ParameterError, get_registry
from neurofilters.plugin_host.cli.main import main

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "brick", "camera")


def _photo(name: str) -> np.ndarray:
    from skimage import data

    picture = getattr(data, name)()
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    return picture[:, :, :3]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)  # the user-model convention: 0..255 in
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(12, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    outputs = keras.layers.Dense(len(PHOTOS), name="logits")(x)
    network = keras.Model(inputs, outputs)
    crops = np.stack([np.asarray(Image.fromarray(_photo(name)).resize((48, 48)), np.float32) for name in PHOTOS])
    network.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    network.fit(crops, np.arange(len(PHOTOS)), epochs=30, verbose=0)
    path = tmp_path_factory.mktemp("fc") / "photos.keras"
    network.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_file: Path):
    return ModelCache(get_registry().get_model).get(os.fspath(model_file))


def _saliency_params(**values):
    from neurofilters.filters.saliency.plugin import PARAMS

    return {param.name: param.default for param in PARAMS} | values


def _weights(model, name: str) -> list[np.ndarray]:
    return [np.asarray(w, np.float64) for w in model.keras_model.get_layer(name).get_weights()]


def _relu(guided: bool):
    """The rectifier of the direct computations: plain, or with guided backprop's gradient rule."""
    import tensorflow as tf

    @tf.custom_gradient
    def guided_relu(z):
        def grad(upstream):
            return tf.nn.relu(upstream) * tf.cast(z > 0, upstream.dtype)

        return tf.nn.relu(z), grad

    return guided_relu if guided else tf.nn.relu


def _direct_gradient(model, image: np.ndarray, unit: int, *, guided: bool) -> np.ndarray:
    """d hidden[unit] / d pixels, written out with TensorFlow ops and the ReLU rule of guided backprop."""
    import tensorflow as tf

    relu = _relu(guided)
    (k1, b1), (k2, b2), (w3, b3) = (_weights(model, name) for name in ("conv1", "conv2", "hidden"))
    pixels = tf.Variable(image[None].astype(np.float64))
    with tf.GradientTape() as tape:
        x = pixels * 255.0 / 255.0  # the 0..255 convention, then the model's own Rescaling
        x = relu(tf.nn.conv2d(x, k1, 1, "VALID") + b1)
        x = relu(tf.nn.conv2d(x, k2, 2, "VALID") + b2)
        x = tf.reduce_mean(x, axis=(1, 2))
        score = relu(tf.matmul(x, w3) + b3)[0, unit]
    return tape.gradient(score, pixels).numpy()[0]


def _active_unit(model, image: np.ndarray) -> int:
    hidden = np.asarray(model.feature_model(["hidden"])(image[None])[0])[0]
    assert hidden.max() > 0, "no hidden unit is on for this photo"
    return int(np.argmax(hidden))


def test_guided_backprop_and_gradient_of_a_hidden_dense_unit_match_a_direct_computation(model, chelsea: np.ndarray) -> None:
    from neurofilters.filters.saliency.engine import explain

    image = np.ascontiguousarray(chelsea[::3, ::3])
    unit = _active_unit(model, image)
    for method, guided in (("guided-backprop", True), ("gradient", False)):
        explanation = explain(model, image, _saliency_params(method=method, target="neuron", target_layer="hidden", channel=unit))
        assert explanation.fully_connected and explanation.target_layer == "hidden"
        expected = _direct_gradient(model, explanation.image, unit, guided=guided)
        raw = explanation.attribution.raw
        assert raw.shape == expected.shape and np.abs(expected).max() > 0
        np.testing.assert_allclose(raw, expected, atol=1e-4 * np.abs(expected).max())
    # The guided rule matters here (the two maps differ), so the check above can tell them apart.
    guided_map = _direct_gradient(model, explanation.image, unit, guided=True)
    assert np.abs(guided_map - expected).max() > 1e-3 * np.abs(expected).max()


def test_the_unit_has_no_position_channel_and_neuron_agree_and_every_method_runs(model, model_file: Path, coffee: np.ndarray) -> None:
    image = np.ascontiguousarray(coffee[::4, ::4])
    unit = _active_unit(model, image)
    maps = {}
    for target, x in (("neuron", 0.1), ("neuron", 0.9), ("channel", 0.5)):
        result = neurofilters.apply("saliency", image, model=os.fspath(model_file), method="guided-backprop",
                                    target=target, target_layer="hidden", channel=unit, neuron_x=x, display="grey")
        maps[(target, x)] = result.outputs["saliency"]
        assert "fully connected layer hidden (it sees the whole image)" in result.summary
    first = maps[("neuron", 0.1)]
    assert first.max() > 0
    for other in maps.values():
        np.testing.assert_array_equal(other, first)
    # The gradient family and the CAM family (a convolutional CAM layer below the unit) accept it too.
    for method in ("smoothgrad", "integrated-gradients", "grad-cam", "guided-grad-cam"):
        result = neurofilters.apply("saliency", image, model=os.fspath(model_file), method=method, target="channel",
                                    target_layer="hidden", channel=unit, layer="conv2", samples=4, steps=4, display="grey")
        assert result.outputs["saliency"].max() > 0, method


def test_the_logits_as_a_unit_equal_the_class_target_on_lite0(chelsea: np.ndarray) -> None:
    image = np.ascontiguousarray(chelsea[::2, ::2])
    by_class = neurofilters.apply("saliency", image, method="guided-backprop", class_=282, display="grey")
    by_unit = neurofilters.apply("saliency", image, method="guided-backprop", target="channel", target_layer="logits",
                                 channel=282, display="grey")
    np.testing.assert_allclose(by_unit.outputs["saliency"], by_class.outputs["saliency"], atol=1e-6)


def test_receptive_field_of_dense_and_pooled_units_is_the_whole_image(model) -> None:
    from neurofilters.filters.explorer.receptive import receptive_field

    for layer in ("pool", "hidden", "drop", "logits"):
        field = receptive_field(model.keras_model, layer, (91, 121))
        assert field.fully_connected and field.whole_image and field.output_shape == (1, 1), layer
        assert field.box(0, 0) == (0, 0, 91, 121)
        # Exact: at 90 x 120 the stride-2 "valid" convolution never reads the last row and column, so neither does the unit.
        field = receptive_field(model.keras_model, layer, (90, 120))
        assert field.fully_connected and not field.whole_image and field.box(0, 0) == (0, 0, 89, 119)
    conv = receptive_field(model.keras_model, "conv2", (91, 121))
    assert not conv.fully_connected and not conv.whole_image and conv.box(0, 0) == (0, 0, 5, 5)


def test_hallucinate_raises_a_dense_unit(model, model_file: Path) -> None:
    photo = np.full((64, 64, 3), 0.5, np.float32)
    hidden = model.feature_model(["hidden"])
    noise = np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32)
    unit = int(np.argmax(np.asarray(hidden(noise)[0]).min(axis=0)))  # on for every noise image: a live unit
    values = []
    for steps in (1, 24):
        result = neurofilters.apply("hallucinate", photo, model=os.fspath(model_file), layer="hidden", channel=unit, neuron=True,
                                    steps=steps, work_size=64, seed=1)
        assert result.pixels.shape == (64, 64, 3)
        values.append(float(np.asarray(hidden(np.asarray(result.pixels)[None])[0])[0, unit]))
    on_noise = np.asarray(hidden(noise)[0])[:, unit]
    assert values[1] > values[0] + 0.2 and values[1] > on_noise.max() + 0.2, (values, on_noise)
    with pytest.raises(ParameterError, match=r"between 0 and 11 for layer 'hidden' \(12 units\)\. Received: channel=12"):
        neurofilters.apply("hallucinate", photo, model=os.fspath(model_file), layer="hidden", channel=12, steps=1)


def test_explore_similar_on_dense_layers_ranks_the_copy_of_the_query_first(model_file: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        Image.fromarray(_photo(name)).save(folder / f"{name}.png")
    query = tmp_path / "query.png"
    Image.fromarray(_photo("chelsea")).save(query)
    for layer in ("hidden", "logits"):
        capsys.readouterr()
        assert main(["explore", "similar", str(query), str(folder), "--model", os.fspath(model_file), "--layer", layer,
                     "--top", "3", "--no-cache"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].endswith("chelsea.png") and lines[0].split()[1] == "1.0000", lines
        assert float(lines[1].split()[1]) < 0.9999, lines


@pytest.mark.parametrize(
    "command",
    [
        ["run", "saliency", "{photo}", "-o", "{out}", "--model", "{model}", "--target", "channel", "--target-layer", "hiden"],
        ["run", "hallucinate", "{photo}", "-o", "{out}", "--model", "{model}", "--layer", "hiden", "--steps", "1"],
        ["explore", "similar", "{photo}", "{folder}", "--model", "{model}", "--layer", "hiden", "--no-cache"],
    ],
)
def test_a_layer_that_does_not_exist_is_one_line(model_file: Path, tmp_path: Path, capsys, command: list[str]) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo("coffee")[::4, ::4]).save(photo)
    values = {"photo": str(photo), "out": str(tmp_path / "out.png"), "model": os.fspath(model_file), "folder": str(tmp_path)}
    capsys.readouterr()
    assert main([part.format(**values) for part in command]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    error = [line for line in error if "%" not in line]  # progress bar lines
    assert len(error) == 1 and "hiden" in error[0] and "hidden" in error[0], error
    assert not (tmp_path / "out.png").exists()


# -- a separate fully connected head, built the way the zoo builds VGG's (flatten, fc1, fc2, predictions) -----------


@pytest.fixture(scope="module")
def headed():
    """A small VGG-shaped classifier: convolution blocks of any size, and a head at a 16-px input (4 x 4 x 16)."""
    import keras

    from neurofilters.filters.zoo.model import ZooModel

    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="block1_pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="block2_pool")(x)
    head = keras.Sequential(
        [
            keras.Input((4, 4, 16)),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            keras.layers.Dense(24, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="predictions"),
        ],
        name="small_head",
    )
    return ZooModel(
        name="small-vgg", kind="classifier", keras_model=keras.Model(inputs, x), preprocess=lambda images: images * 2.0 - 1.0,
        min_size=16, input_size=16, labels=[f"class {index}" for index in range(10)], classifier_head=head, head_input_size=16,
    )


def _headed_direct(model, image: np.ndarray, layer: str, unit: int, *, guided: bool) -> np.ndarray:
    import tensorflow as tf

    relu = _relu(guided)
    weights = {layer.name: [np.asarray(w, np.float64) for w in layer.get_weights()]
               for layer in [*model.keras_model.layers, *model._classifier_head.layers] if layer.get_weights()}
    pixels = tf.Variable(image[None].astype(np.float64))
    with tf.GradientTape() as tape:
        x = pixels * 2.0 - 1.0
        for name in ("block1_conv1", "block2_conv1"):
            kernel, bias = weights[name]
            x = tf.nn.max_pool2d(relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias), 2, 2, "VALID")
        x = tf.reshape(x, (1, -1))
        for name in ("fc1", "fc2", "predictions"):
            kernel, bias = weights[name]
            x = tf.matmul(x, kernel) + bias
            x = x if name == "predictions" else relu(x)
            if name == layer:
                break
        score = x[0, unit]
    return tape.gradient(score, pixels).numpy()[0]


def test_head_layers_are_named_units_for_saliency_like_vgg_fc1_fc2(headed, chelsea: np.ndarray) -> None:
    from neurofilters.filters.saliency.engine import explain

    assert headed.head_layers == ("flatten", "fc1", "fc2", "predictions") and headed.resolve_layer("FC1") == "fc1"
    image = np.ascontiguousarray(chelsea[::5, ::5])
    seen = None
    for layer in ("fc1", "fc2"):
        values = np.asarray(headed.feature_model([layer])(np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((16, 16)), np.float32)[None] / 255)[0])[0]
        unit = int(np.argmax(values))
        for method, guided in (("guided-backprop", True), ("gradient", False)):
            explanation = explain(headed, image, _saliency_params(method=method, target="neuron", target_layer=layer, channel=unit))
            seen = explanation.image
            assert seen.shape == (16, 16, 3) and explanation.fully_connected
            expected = _headed_direct(headed, seen, layer, unit, guided=guided)
            assert np.abs(expected).max() > 0
            np.testing.assert_allclose(explanation.attribution.raw, expected, atol=1e-4 * np.abs(expected).max())
    # The class target goes through the same head (it used to resize the 4 x 4 grid to 16 x 16), and equals the logit unit.
    by_class = explain(headed, image, _saliency_params(method="guided-backprop", class_=3))
    by_unit = explain(headed, image, _saliency_params(method="guided-backprop", target="channel", target_layer="predictions", channel=3))
    np.testing.assert_allclose(by_class.attribution.raw, _headed_direct(headed, seen, "predictions", 3, guided=True), atol=1e-5)
    np.testing.assert_allclose(by_unit.attribution.raw, by_class.attribution.raw, atol=1e-6)


def test_head_layers_for_hallucinate_and_explore_similar(headed, tmp_path: Path) -> None:
    from neurofilters.filters.explorer.similar import descriptor, folder_descriptors, rank
    from neurofilters.filters.visualization.objectives import resolve_objective
    from neurofilters.filters.visualization.visualize import RECIPES, visualize

    # Backbone and head layers in one feature model: all computed at the head's input size.
    both = headed.feature_model(["block2_conv1", "fc2"])
    maps, units = both(np.full((1, 40, 56, 3), 0.5, np.float32))
    assert tuple(maps.shape) == (1, 8, 8, 16) and tuple(units.shape) == (1, 24)

    objective = resolve_objective(headed, {"class_": 0, "layer": "fc2", "channel": 5, "neuron": True})
    assert (objective.layer, objective.kind, objective.index) == ("fc2", "unit", 5)
    fc2 = headed.feature_model(["fc2"])
    scores = []
    for steps in (1, 32):
        image = visualize(headed, objective, height=32, width=32, steps=steps, recipe=RECIPES["robust"], rng=np.random.default_rng(0))
        scores.append(float(np.asarray(fc2(image[None])[0])[0, 5]))
    assert scores[1] > scores[0] + 0.05, scores

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        Image.fromarray(_photo(name)).save(folder / f"{name}.png")
    paths = sorted(folder.iterdir())
    vectors = folder_descriptors(headed, "fc2", paths, size=64)
    from neurofilters.filters.explorer.patches import load_work_image

    query = descriptor(np.asarray(fc2(load_work_image(folder / "rocket.png", 64)[None])[0])[0])
    order, similarities = rank(query, vectors)
    assert paths[order[0]].name == "rocket.png" and similarities[0] == pytest.approx(1.0, abs=1e-6) and similarities[1] < 0.9999


def test_a_fixed_size_model_with_flatten_and_dense_works_in_all_three(tmp_path: Path, capsys) -> None:
    """The textbook network: convolutions, Flatten, Dense at one input size (64 x 64); images of any size are resized to it."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(4, name="pool1")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(12, activation="relu", name="fc1")(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x)).save(tmp_path / "fixed.keras")
    model = os.fspath(tmp_path / "fixed.keras")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS[:4]:
        Image.fromarray(_photo(name)).save(folder / f"{name}.png")
    photo = folder / "coffee.png"
    out = tmp_path / "out.png"
    assert main(["run", "saliency", str(photo), "-o", str(out), "--model", model, "--method", "guided-backprop",
                 "--target", "channel", "--target-layer", "probs", "--channel", "1"]) == 0
    assert "unit 1 of the fully connected layer probs (it sees the whole image)" in capsys.readouterr().err
    assert main(["run", "hallucinate", str(photo), "-o", str(out), "--model", model, "--layer", "fc1", "--channel", "2",
                 "--steps", "2", "--work-size", "96", "-q"]) == 0
    assert np.asarray(Image.open(out)).shape[:2] == _photo("coffee").shape[:2]
    capsys.readouterr()
    assert main(["explore", "similar", str(photo), str(folder), "--model", model, "--layer", "fc1", "--no-cache"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("coffee.png")


def test_explore_patches_refuses_a_dense_layer_in_one_line_saying_where_its_units_go(model_file: Path, tmp_path: Path, capsys) -> None:
    Image.fromarray(_photo("coffee")[::4, ::4]).save(tmp_path / "coffee.png")
    capsys.readouterr()
    assert main(["explore", "patches", os.fspath(model_file), "hidden", "0", str(tmp_path), "-o", str(tmp_path / "sheet.png")]) == 2
    error = [line for line in capsys.readouterr().err.strip().splitlines() if "%" not in line]
    assert len(error) == 1 and "layer='hidden'" in error[0] and "explore similar" in error[0], error
