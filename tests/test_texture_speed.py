"""The texture engine's fast paths and uniformity: padding folds, the octave schedule, the stall stop, no frame."""

from __future__ import annotations

import numpy as np
import pytest
from texture_fixtures import border_gradient_ratio, gimp_pattern_dir

from neurofilters.plugin_host import FilterContext


@pytest.mark.parametrize("mode", ["wrap", "reflect", "symmetric"])
def test_fold_padding_is_the_adjoint_of_padding(mode: str) -> None:
    """<pad(x), g> = <x, fold(g)> for every x and g: the folded gradient is the padded image's gradient."""
    from neurofilters.filters.texture.engine import fold_padding

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 24, 3))
    g = rng.standard_normal((20 + 2 * 8, 24 + 2 * 8, 3))
    padded = np.pad(x, ((8, 8), (8, 8), (0, 0)), mode=mode)
    assert np.sum(padded * g) == pytest.approx(np.sum(x * fold_padding(g, 8, 20, 24, mode)), rel=1e-10)


def test_octave_steps_pyramid_and_flat() -> None:
    from neurofilters.filters.texture.synthesis import MAX_OCTAVE_STEPS, octave_steps

    assert octave_steps(10, 4) == [80, 40, 20, 10]
    assert octave_steps(100, 3) == [MAX_OCTAVE_STEPS, MAX_OCTAVE_STEPS, 100]
    assert octave_steps(8, 4, most=32) == [32, 32, 16, 8]  # the texture filter's cap
    assert octave_steps(40, 2, most=32) == [40, 40]  # or --steps if more
    assert octave_steps(7, 1) == [7]
    assert octave_steps(7, 3, "flat") == [7, 7, 7]
    with pytest.raises(ValueError, match="Received: schedule='steep'"):
        octave_steps(7, 3, "steep")


def test_stalled_needs_a_whole_window_of_small_falls() -> None:
    from neurofilters.filters.texture.engine import STALL_WINDOW, stalled

    falling = [1.0 / (1 + i) for i in range(20)]
    flat = [1.0] * (STALL_WINDOW + 1)
    assert not stalled(falling, 1e-3)
    assert stalled(flat, 1e-3)
    assert not stalled(flat, 0.0)
    assert not stalled(flat[:STALL_WINDOW], 1e-3)


@pytest.mark.slow
def test_mirrored_surround_removes_the_frame_of_zero_padding(tmp_path_factory: pytest.TempPathFactory) -> None:
    """GIMP's leopard (64 x 62): with the network's zero padding the synthesis has a frame, a band along the
    borders whose contrast differs from the centre's (the sample's statistics, measured with zero padding,
    carry its own borders' responses); with the mirrored surround (the filter's default) it does not."""
    from neurofilters.filters.texture import synthesis
    from neurofilters.plugin_host.imageio.files import load_image

    path = gimp_pattern_dir(tmp_path_factory) / "Animal" / "leopard.pat"
    if not path.is_file():
        pytest.skip(f"GIMP's leopard pattern is not at {path}")
    sample = synthesis.rgb_of(load_image(path).pixels)
    layers = ["block1_conv1", "block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 512}, layers, None)
    ratios = {}
    for boundary in ("zero", "reflect"):
        image, _ = synthesis.synthesise(engine, sample, (128, 128), steps=40, octaves=1, wrap=False, rng=np.random.default_rng(0), boundary=boundary)
        ratios[boundary] = border_gradient_ratio(image)
    print(ratios)
    assert abs(ratios["reflect"] - 1) <= 0.1, ratios
    assert abs(ratios["zero"] - 1) > abs(ratios["reflect"] - 1) + 0.1, ratios  # the measure does see the frame


def test_small_outputs_get_more_iterations_by_default_only() -> None:
    """At 128 x 128 the default's 8 iterations lose brick rows; 32 keep them (measured): x sqrt(512²/pixels), at most x4."""
    from neurofilters.filters.texture.synthesis import default_steps
    from neurofilters.plugin_host import FilterContext

    default, chosen = FilterContext(given=()), FilterContext(given=("steps",))
    assert default_steps(8, (512, 512), default) == 8
    assert default_steps(8, (1024, 768), default) == 8
    assert default_steps(8, (256, 256), default) == 16
    assert default_steps(8, (128, 128), default) == 32
    assert default_steps(8, (32, 32), default) == 32  # at most x4
    assert default_steps(8, (128, 128), chosen) == 8  # what the user asks for is what runs


def test_the_default_layers_are_recognised_in_their_parsed_form() -> None:
    """The host hands ``--layers auto`` over parsed, as ``(("auto", 1.0),)``: the finest octave's shallow layer set
    (FINE_LAYERS) must still apply to the default run (it did not: the check compared with the string only)."""
    from neurofilters.filters.texture.plugin import TEXTURE_PARAMS
    from neurofilters.filters.texture.synthesis import is_auto_layers
    from neurofilters.plugin_host import validate_params

    parsed = validate_params(TEXTURE_PARAMS, {}, check_required=False)
    assert is_auto_layers(parsed["layers"]), parsed["layers"]
    assert is_auto_layers("auto") and is_auto_layers(None)
    assert not is_auto_layers(validate_params(TEXTURE_PARAMS, {"layers": "block1_conv1:1"}, check_required=False)["layers"])


def test_asking_for_more_iterations_matches_every_layer_at_the_finest_octave() -> None:
    """The shallow finest octave is for the defaults (at most 32 iterations at any size); above that, or with named
    layers, every layer is matched there too (the shallow one stalls at a deep-layer error more iterations cannot lower)."""
    from types import SimpleNamespace

    from neurofilters.filters.texture.plugin import DEFAULT_STEPS
    from neurofilters.filters.texture.synthesis import FINE_LAYERS, SHALLOW_FINE_MAX_STEPS, default_steps, fine_layer_count

    default = SimpleNamespace(given=frozenset())
    for side in (16, 64, 128, 256, 512, 1024, 4096):
        steps = default_steps(DEFAULT_STEPS, (side, side), default)
        assert steps <= SHALLOW_FINE_MAX_STEPS and fine_layer_count(steps, True) == FINE_LAYERS, (side, steps)
    assert fine_layer_count(SHALLOW_FINE_MAX_STEPS + 1, True) == 0
    assert fine_layer_count(1, False) == 0  # named layers: every one everywhere, whatever the iterations


def test_each_filter_s_steps_help_states_its_own_octave_cap() -> None:
    """Texture and style transfer cap their coarser octaves differently; each --steps help names its own cap (the
    light declaration restates synthesis' constants, so this keeps them equal), and only texture's speaks of layers."""
    from neurofilters.filters.texture.plugin import STYLE_PARAMS, TEXTURE_PARAMS
    from neurofilters.filters.texture.synthesis import MAX_OCTAVE_STEPS, SHALLOW_FINE_MAX_STEPS, TEXTURE_MAX_OCTAVE_STEPS

    texture = next(param for param in TEXTURE_PARAMS if param.name == "steps").help
    style = next(param for param in STYLE_PARAMS if param.name == "steps").help
    assert f"at most {TEXTURE_MAX_OCTAVE_STEPS} (or --steps if more)" in texture, texture
    assert f"at most {MAX_OCTAVE_STEPS} (or --steps if more)" in style, style
    assert f"up to {SHALLOW_FINE_MAX_STEPS} the finest octave matches only the three shallowest layers" in texture
    assert "layers" not in style and "Texture" not in style, style


def test_shallow_objectives_get_a_narrower_surround_with_the_same_statistics() -> None:
    """The finest octave matches layers up to block2_pool (stride 4): an 8 px mirrored surround gives their Gram
    matrices exactly as the full 16 px one does (their receptive fields reach 6 px beyond the cell), at fewer pixels."""
    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.engine import Objective

    layers = ["block1_conv1", "block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    engine = synthesis.build_engine(FilterContext(seed=0), {"model": "vgg16-hed", "precision": "float32", "tile_size": 512}, layers, None)
    image = np.random.default_rng(0).random((48, 40, 3)).astype(np.float32)
    targets = engine.gram_targets(image, "reflect")
    assert engine.reflect_margin == 16
    assert engine.surround(Objective(targets, [1.0, 1.0, 1.0, 0.0, 0.0])) == 8
    assert engine.surround(Objective(targets, [1.0, 0.0, 0.0, 0.0, 0.0])) == 2
    assert engine.surround(Objective(targets, [1.0] * 5)) == 16
    narrow, counts, _ = engine._forward_stats(image, "reflect", None, 8)
    for index in range(3):
        np.testing.assert_allclose(narrow[index] / counts[index], targets[index], rtol=1e-4, atol=1e-6 * float(np.abs(targets[index]).max()))
    assert not np.allclose(narrow[4] / counts[4], targets[4], rtol=1e-3)  # block4_pool does see the difference

