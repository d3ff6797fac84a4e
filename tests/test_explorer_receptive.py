"""Exact receptive fields, checked by brute force: perturb one input pixel and see which outputs move."""

from __future__ import annotations

import numpy as np
import pytest

from neurofilters.filters.explorer.receptive import receptive_field


def _moved(feature: object, image: np.ndarray, y: int, x: int) -> np.ndarray:
    """Output positions (any channel) whose value changes when input pixel (y, x) changes."""
    changed = image.copy()
    changed[:, y, x, :] += 1.0
    both = np.asarray(feature(np.concatenate([image, changed]), training=False))
    diff = np.abs(both[1] - both[0]).max(axis=-1)
    scale = np.abs(both[0]).max() + 1e-6
    return diff > 1e-5 * scale


def _predicted(field: object, shape: tuple[int, int], y: int, x: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for oy in range(shape[0]):
        for ox in range(shape[1]):
            top, left, bottom, right = field.box(oy, ox)
            mask[oy, ox] = top <= y < bottom and left <= x < right
    return mask


def _assert_inside_with_same_box(moved: np.ndarray, predicted: np.ndarray) -> None:
    assert moved.any()
    assert not (moved & ~predicted).any(), "outputs moved outside the predicted field"
    rows, cols = np.nonzero(moved)
    prow, pcol = np.nonzero(predicted)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (prow.min(), prow.max(), pcol.min(), pcol.max())


def _linear_net() -> object:
    """A small linear network with every geometry case: stride-2 'same' (asymmetric), dilation, pooling, padding, a residual add."""
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((None, None, 2))
    a = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="s2")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv")(a)
    c = keras.layers.Add(name="add")([a, b])
    d = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="pool")(c)  # max pooling: same geometry, not linear
    e = keras.layers.ZeroPadding2D(((1, 0), (2, 1)), name="pad")(d)
    f = keras.layers.Conv2D(3, (5, 3), strides=(2, 1), padding="valid", name="valid")(e)
    g = keras.layers.DepthwiseConv2D(4, strides=2, padding="same", name="dw")(f)
    h = keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same", name="dil")(a)
    model = keras.Model(inputs, [a, b, c, d, e, f, g, h])
    for weight in model.weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))  # positive: nothing cancels
    return model


@pytest.mark.parametrize("size", [(33, 35), (32, 38)])
def test_fields_match_brute_force_on_a_linear_net(size: tuple[int, int]) -> None:
    """Perturb every input pixel in turn; the pixels that move an output span exactly its box.

    Without dilation the moved set *is* the box; a dilated kernel's taps leave holes (also
    where a tap falls into the padding), so there the box contains the moved set and equals
    its bounding box wherever the field lies inside the image.
    """
    import keras

    model = _linear_net()
    names = ["s2", "conv", "add", "pool", "pad", "valid", "dw", "dil"]
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (1, *size, 2)).astype("float32")
    batch = np.repeat(image, size[0] * size[1] + 1, axis=0)
    batch[1:].reshape(size[0] * size[1], -1, 2)[np.arange(size[0] * size[1]), np.arange(size[0] * size[1])] += 1.0
    for index, name in enumerate(names):
        single = keras.Model(model.inputs[0], model.outputs[index])
        field = receptive_field(model, name, size)
        outputs = np.asarray(single.predict(batch, batch_size=256, verbose=0))
        assert field.output_shape == outputs.shape[1:3], name
        # influence[y, x, oy, ox]: does pixel (y, x) move output (oy, ox)?
        diff = np.abs(outputs[1:] - outputs[0]).max(axis=-1)
        influence = (diff > 1e-5 * np.abs(outputs[0]).max()).reshape(*size, *outputs.shape[1:3])
        for oy in range(outputs.shape[1]):
            for ox in range(outputs.shape[2]):
                top, left, bottom, right = field.box(oy, ox)
                seen = influence[:, :, oy, ox]
                if name == "pad" and (oy < 1 or ox < 2 or ox == outputs.shape[2] - 1):
                    assert not seen.any()  # positions in the explicit zero padding see nothing
                    continue
                ys, xs = np.nonzero(seen)
                assert top <= ys.min() and left <= xs.min() and ys.max() < bottom and xs.max() < right, (name, oy, ox)
                if name != "dil":
                    assert seen[top:bottom, left:right].all() and seen.sum() == (bottom - top) * (right - left), (name, oy, ox)
                elif field.box(oy, ox, clip=False) == (top, left, bottom, right):
                    assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (top, left, bottom, right), (name, oy, ox)


def test_symmetric_padding_would_fail_the_check() -> None:
    """The brute force can fail: a stride-2 'same' 3x3 convolution on an even side pads only after."""
    field = receptive_field(_linear_net(), "s2", (40, 40))
    assert field.rows.start == 0 and field.rows.size == 3  # symmetric padding would say start -1
    odd = receptive_field(_linear_net(), "s2", (41, 41))
    assert odd.rows.start == -1


@pytest.mark.slow
@pytest.mark.parametrize("model_name, layer", [("lite0", "block3_expand_act"), ("lite0", "block5_dw_act"), ("vgg16-hed", "block3_conv1")])
def test_fields_match_brute_force_on_embedded_models(model_name: str, layer: str) -> None:
    """Real networks (ReLUs can hide a change): moved positions lie inside the predicted set and share its bounding box."""
    from neurofilters.plugin_host import ModelCache, get_registry

    model = ModelCache(get_registry().get_model).get(model_name)
    feature = model.feature_model([layer])
    size = (70, 66)
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 1, (1, *size, 3)).astype("float32")
    field = receptive_field(model.keras_model, model.resolve_layer(layer), size)

    def run(batch: np.ndarray, training: bool = False) -> np.ndarray:
        return np.asarray(feature(batch, training=False)[0])

    out_shape = run(image).shape[1:3]
    assert field.output_shape == tuple(out_shape)
    for y, x in [(0, 0), (size[0] - 1, size[1] - 1), (33, 20)]:
        moved = _moved(run, image, y, x)
        predicted = _predicted(field, out_shape, y, x)
        _assert_inside_with_same_box(moved, predicted)


def test_a_sequential_model_has_the_fields_of_its_functional_twin() -> None:
    """A Sequential model's layers are read as a chain from its input (its config names no inbound nodes)."""
    import keras

    def stack() -> list:
        return [keras.layers.Conv2D(2, 3, strides=2, padding="same", name="s2"), keras.layers.ReLU(name="act"),
                keras.layers.Conv2D(2, 5, padding="valid", name="valid")]

    chain = keras.Sequential([keras.Input((None, None, 3)), *stack()])
    images = keras.Input((None, None, 3))
    value = images
    for layer in stack():
        value = layer(value)
    functional = keras.Model(images, value)
    for name in ("s2", "act", "valid"):
        assert receptive_field(chain, name, (40, 38)) == receptive_field(functional, name, (40, 38)), name
    assert receptive_field(chain, "valid", (40, 38)).rows.size == 11  # 3 + (5 - 1) * 2
