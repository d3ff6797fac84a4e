"""EfficientNet-Lite0: weights mapping, real classifications, layer names and the ZooModel handle."""

from __future__ import annotations

import re

import numpy as np
import pytest

from neurofilters.filters.zoo import LayerInfo, ZooModel
from neurofilters.filters.zoo.lite0 import build_lite0, lite0_source_path, load_lite0
from neurofilters.filters.zoo.torch_legacy import read_legacy_state_dict
from neurofilters.plugin_host import ParameterError


@pytest.fixture(scope="module")
def lite0() -> ZooModel:
    return load_lite0()


def _documented_target(key: str) -> tuple[str, int, tuple[int, ...] | None]:
    """The checkpoint's key mapping (docs/architecture.md: the zoo), written out independently: torch key -> (layer, weight index, transpose)."""
    bn_parts = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}
    conv = (2, 3, 1, 0)
    fixed = {"_conv_stem.weight": ("stem_conv", 0, conv), "_conv_head.weight": ("head_conv", 0, conv),
             "_fc.weight": ("logits", 0, (1, 0)), "_fc.bias": ("logits", 1, None)}
    if key in fixed:
        return fixed[key]
    match = re.fullmatch(r"_(bn0|bn1)\.(\w+)", key)
    if match:
        return ("stem_bn" if match.group(1) == "bn0" else "head_bn", bn_parts[match.group(2)], None)
    block, module, part = re.fullmatch(r"_blocks\.(\d+)\._(\w+)\.(\w+)", key).groups()
    layer = {"expand_conv": "expand_conv", "bn0": "expand_bn", "depthwise_conv": "dwconv",
             "bn1": "dw_bn", "project_conv": "project_conv", "bn2": "project_bn"}[module]
    if module.endswith("conv"):
        return (f"block{block}_{layer}", 0, (2, 3, 0, 1) if module == "depthwise_conv" else conv)
    return (f"block{block}_{layer}", bn_parts[part], None)


def test_every_keras_weight_equals_its_checkpoint_tensor(lite0: ZooModel) -> None:
    state = read_legacy_state_dict(lite0_source_path())
    network = lite0.keras_model
    covered = set()
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        layer, index, axes = _documented_target(key)
        expected = tensor.transpose(axes) if axes else tensor
        variable = network.get_layer(layer).weights[index]
        np.testing.assert_array_equal(np.asarray(variable), expected, err_msg=key)
        covered.add((layer, index))
    every_variable = {(layer.name, index) for layer in network.layers for index in range(len(layer.weights))}
    assert covered == every_variable
    assert network.count_params() == 4_694_024  # the checkpoint's count, BN statistics included


def test_architecture_facts() -> None:
    network = build_lite0()
    bns = [layer for layer in network.layers if type(layer).__name__ == "BatchNormalization"]
    assert bns and all(layer.epsilon == 1e-3 for layer in bns)
    convs = [layer for layer in network.layers if "Conv2D" in type(layer).__name__]
    assert all(layer.padding == "same" and not layer.use_bias for layer in convs)
    assert not [layer for layer in network.layers if "squeeze" in layer.name or "se_" in layer.name]
    adds = [layer.name for layer in network.layers if layer.name.endswith("_add")]
    assert adds == [f"block{i}_add" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]


def test_coffee_is_espresso(lite0: ZooModel, coffee: np.ndarray) -> None:
    top = lite0.classify(coffee, top=3)
    assert top[0][:2] == (967, "espresso")
    assert top[0][2] == pytest.approx(0.951, abs=0.002)


def test_chelsea_is_a_cat(lite0: ZooModel, chelsea: np.ndarray) -> None:
    top = lite0.classify(chelsea, top=3)
    assert [entry[0] for entry in top] == [282, 285, 281]
    assert [entry[1] for entry in top] == ["tiger cat", "Egyptian cat", "tabby"]
    assert [round(entry[2], 2) for entry in top] == [0.39, 0.36, 0.17]


def test_logits_model_runs_any_size_and_matches_the_raw_network(lite0: ZooModel, chelsea: np.ndarray) -> None:
    image = chelsea[:97, :131][None]
    logits = np.asarray(lite0.logits_model()(image))
    raw = np.asarray(lite0.keras_model((image * 255 - 127) / 128))
    assert logits.shape == (1, 1000)
    np.testing.assert_allclose(logits, raw, rtol=1e-5, atol=1e-5)
    assert lite0.logits_model() is lite0.logits_model()


def test_feature_model_returns_the_requested_layers_in_order(lite0: ZooModel, coffee: np.ndarray) -> None:
    model = lite0.feature_model(["block10", "block5_expand_act", "stem"])
    outputs = model(coffee[None, :64, :96])
    assert isinstance(outputs, list)
    assert [tuple(output.shape) for output in outputs] == [(1, 4, 6, 672), (1, 8, 12, 240), (1, 32, 48, 32)]
    activations = np.concatenate([np.ravel(output) for output in outputs])
    assert activations.min() >= 0.0 and activations.max() <= 6.0  # post-ReLU6
    assert lite0.feature_model(("block10_expand_act", "block5", "stem_act")) is model
    single = lite0.feature_model(["block5"])(coffee[None, :32, :32])
    assert isinstance(single, list) and len(single) == 1


def test_feature_model_is_differentiable_with_respect_to_the_rgb_input(lite0: ZooModel, coffee: np.ndarray) -> None:
    import tensorflow as tf

    image = tf.Variable(coffee[None, :64, :64])
    model = lite0.feature_model(["block5"])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(image)[0])
    gradient = tape.gradient(loss, image)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_layer_aliases_resolve(lite0: ZooModel) -> None:
    assert lite0.resolve_layer("block5") == "block5_expand_act"
    assert lite0.resolve_layer("Block15") == "block15_expand_act"
    assert lite0.resolve_layer("block0") == "block0_dw_act"
    assert lite0.resolve_layer("head") == "head_act"
    assert lite0.resolve_layer("block3_project_bn") == "block3_project_bn"
    assert lite0.default_dream_layers == (("block5_expand_act", 1.0), ("block10_expand_act", 1.0))


def test_an_unknown_layer_gets_suggestions(lite0: ZooModel) -> None:
    with pytest.raises(ParameterError) as caught:
        lite0.resolve_layer("blok5_expand_act")
    message = str(caught.value)
    assert "Received: layer='blok5_expand_act'" in message
    assert "Did you mean: block5_expand_act" in message
    assert caught.value.param == "layer"
    # among equally close names, the useful layers come first: the default block5, then block2
    # (recommended), before block1/block3/block4 (plain dream targets)
    assert lite0.suggest_layers("blok5") == ["block5", "block2", "block15"]
    assert lite0.suggest_layers("blockk") [:2] == ["block5", "block2"]
    with pytest.raises(ParameterError, match="at least one layer"):
        lite0.feature_model([])


def test_layer_table(lite0: ZooModel) -> None:
    table = {info.name: info for info in lite0.layer_table()}
    # an activation reports the weights of the stage it ends: expand conv (40 x 240, no bias) + BN (4 x 240)
    assert table["block5_expand_act"] == LayerInfo(
        "block5_expand_act", "block5", "ReLU", (1, 28, 28, 240), 40 * 240 + 4 * 240, True, True, "cells, eyes"
    )
    assert table["block5_expand_conv"].params == 40 * 240 and table["block5_expand_bn"].params == 4 * 240
    recommended = sorted(info.alias for info in table.values() if info.recommended)
    assert recommended == ["block10", "block2", "block5", "block9"]  # not every dream target
    assert "stripes" in table["block3_expand_act"].note and not table["block3_expand_act"].recommended
    assert table["block10_expand_act"].output_shape == (1, 14, 14, 672)
    assert table["logits"].output_shape == (1, 1000) and table["logits"].params == 1_281_000
    assert table["block3_project_bn"].dream_target is False
    assert sum(info.dream_target for info in table.values()) == 15
    assert "input" not in table
    assert {info.name: info.output_shape for info in lite0.layer_table(64)}["head_act"] == (1, 2, 2, 1280)


def test_handle_attributes(lite0: ZooModel) -> None:
    assert (lite0.name, lite0.kind, lite0.input_size, lite0.min_size) == ("lite0", "classifier", 224, 32)
    assert lite0.labels is not None and len(lite0.labels) == 1000
    assert tuple(lite0.keras_model.inputs[0].shape) == (None, None, None, 3)
    tiny = np.asarray(lite0.logits_model()(np.zeros((1, lite0.min_size, lite0.min_size, 3), np.float32)))
    assert tiny.shape == (1, 1000)


def test_layers_command_shows_types_and_shapes_and_marks_only_the_recommended(capsys: pytest.CaptureFixture[str]) -> None:
    from neurofilters.plugin_host.cli.main import main

    assert main(["layers", "lite0"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"block\d+_", line)]
    assert len(rows) == 15 and all(row[2] == "ReLU" and re.fullmatch(r"\d+×\d+×\d+", row[3]) for row in rows)
    starred = [row[1] for row in rows if "★" in row]
    assert starred == ["block2", "block5", "block9", "block10"]
    assert "--layers block5,block10" in out
    assert all(len(line) <= 80 for line in out.splitlines()), out
