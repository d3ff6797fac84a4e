"""EfficientNet-Lite1: the generalised Lite builder, its checkpoint mapping and real classifications."""

from __future__ import annotations

import numpy as np
import pytest

from neurofilters.filters.zoo import ZooModel
from neurofilters.filters.zoo.lite0 import LITE0, LITE1, build_lite, lite_source_path, load_lite1
from neurofilters.filters.zoo.torch_legacy import read_legacy_state_dict


@pytest.fixture(scope="module")
def lite1() -> ZooModel:
    return load_lite1()


def test_stage_table_scales_inner_stages_only() -> None:
    # Depth 1.1: ceil(repeats * 1.1) for stages 2-6, the first and last stage keep one block.
    assert [stage[0] for stage in LITE1.stages()] == [1, 3, 3, 4, 4, 5, 1]
    assert [stage[0] for stage in LITE0.stages()] == [1, 2, 2, 3, 3, 4, 1]
    assert LITE1.block_count() == 21


def test_checkpoint_blocks_match_the_built_network(lite1: ZooModel) -> None:
    state = read_legacy_state_dict(lite_source_path(LITE1))
    blocks = {int(key.split(".")[1]) for key in state if key.startswith("_blocks.")}
    assert blocks == set(range(21))
    network = lite1.keras_model
    for index in range(21):
        depthwise = state[f"_blocks.{index}._depthwise_conv.weight"]
        np.testing.assert_array_equal(np.asarray(network.get_layer(f"block{index}_dwconv").weights[0]), depthwise.transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(np.asarray(network.get_layer("logits").weights[0]), state["_fc.weight"].T)
    total = sum(array.size for key, array in state.items() if not key.endswith("num_batches_tracked"))
    assert network.count_params() == total == LITE1.parameters


def test_residual_adds_follow_the_stage_table() -> None:
    network = build_lite(LITE1)
    adds = [layer.name for layer in network.layers if layer.name.endswith("_add")]
    # Every block but the first of each stage (and block 0, whose channels change) adds its input.
    assert adds == [f"block{i}_add" for i in (2, 3, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19)]


def test_lite1_classifies_real_photos(lite1: ZooModel, coffee: np.ndarray, chelsea: np.ndarray) -> None:
    assert lite1.input_size == 240
    top = lite1.classify(coffee, top=3)
    assert top[0][:2] == (967, "espresso")
    cats = [entry[0] for entry in lite1.classify(chelsea, top=3)]
    assert set(cats) == {281, 282, 285}


def test_lite1_is_registered() -> None:
    from neurofilters.plugin_host import get_registry

    registry = get_registry()
    assert "lite1" in registry.model_names()
    assert registry.get_model("efficientnet-lite1").load == "neurofilters.filters.zoo.lite0:load_lite1"
