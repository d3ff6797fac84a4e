"""The deepdream filter on the real embedded models (EfficientNet-Lite0, VGG16-HED), on small photos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters.plugin_host as plugin_host
from neurofilters.filters import smoothing, tiling
from neurofilters.filters.deepdream import engine
from neurofilters.filters.deepdream.plugin import PARAMS, PRESETS, deepdream_spec
from neurofilters.plugin_host import FilterCancelled, FilterContext, ModelCache, ParameterError, apply_filter, validate_params
from neurofilters.plugin_host.imageio.values import load_image_params
from neurofilters.plugin_host.core.call import resolve_presets

FAST = {"octaves": 2, "steps": 3}


@pytest.fixture(scope="module")
def models() -> ModelCache:
    """One model cache for the module, so each network loads once."""
    return ModelCache()


@pytest.fixture(scope="module")
def spec() -> plugin_host.FilterSpec:
    return plugin_host.build_registry(autoload=False).get_filter("deepdream")


@pytest.fixture(scope="module")
def cat(chelsea: np.ndarray) -> np.ndarray:
    """A 160 x 120 version of the cat photo."""
    pixels = Image.fromarray((chelsea * 255).astype(np.uint8)).resize((160, 120), Image.BICUBIC)
    return np.asarray(pixels, np.float32) / 255.0


def settings_for(values: dict) -> engine.DreamSettings:
    params = resolve_presets(deepdream_spec(), validate_params(PARAMS, values))
    return engine.settings_from_params(params)


def dream(spec, image, values, models, seed=0, progress=None, emit=None) -> np.ndarray:
    """The filter as every front end calls it: validated values, image parameters loaded by the host."""
    loaded = load_image_params(spec.params, validate_params(spec.params, values))
    return apply_filter(spec, image, loaded, seed=seed, models=models, progress=progress, validated=True, emit=emit)


# --------------------------------------------------------------------------- declaration
def test_registered_with_every_control(spec: plugin_host.FilterSpec) -> None:
    names = {param.name for param in spec.params}
    assert {
        "model", "layers", "objective", "channel", "loss", "relu6", "guide", "octaves", "octave_scale", "detail",
        "steps", "step_size", "normalize", "jitter", "smoothing", "chroma", "loss_ceiling", "clip", "mask",
        "mask_alpha", "mask_feather", "tile_size", "memory_mb", "frames", "frame_zoom", "preset",
    } <= names
    assert spec.params == PARAMS and spec.run == "neurofilters.filters.deepdream.engine:run"


def test_declaration_module_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, neurofilters.filters.deepdream.plugin as p; p.register_filters(); "
        "heavy = [m for m in ('numpy', 'keras', 'tensorflow', 'jax') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_presets_only_fill_parameters_left_at_default() -> None:
    params = validate_params(PARAMS, {"preset": "tf-tutorial", "steps": 7})
    resolved = resolve_presets(deepdream_spec(), params)
    assert resolved["steps"] == 7  # the user's value wins
    assert resolved["octaves"] == 5 and resolved["upscale_octaves"] == 2 and resolved["octave_scale"] == 1.3
    assert resolved["layers"] == (("mixed3", 1.0), ("mixed5", 1.0)) and resolved["detail"] is False
    for name, values in PRESETS.items():
        validate_params(PARAMS, values, check_files=False)  # every preset value is valid


def test_auto_preset_follows_the_model() -> None:
    """The default preset tunes VGG16 (damped colour, mean |g|); Lite0 runs on the declared defaults."""
    lite0 = resolve_presets(deepdream_spec(), validate_params(PARAMS, {}))
    assert lite0 == validate_params(PARAMS, {})
    vgg = resolve_presets(deepdream_spec(), validate_params(PARAMS, {"model": "vgg16-hed"}))
    assert vgg["chroma"] == PRESETS["vgg16-classic"]["chroma"] < 1 and vgg["normalize"] == "mean-abs"
    plain = resolve_presets(deepdream_spec(), validate_params(PARAMS, {"model": "vgg16-hed", "preset": "none"}))
    declared = {param.name: param.default for param in PARAMS}
    assert plain["chroma"] == declared["chroma"] and plain["normalize"] == "std" == declared["normalize"]
    mine = resolve_presets(deepdream_spec(), validate_params(PARAMS, {"model": "vgg16-hed", "chroma": 0.5}))
    assert mine["chroma"] == 0.5


# --------------------------------------------------------------------------- correctness
@pytest.fixture(scope="module")
def cat256(chelsea: np.ndarray) -> np.ndarray:
    """The cat photo, 256 x 171."""
    pixels = Image.fromarray((chelsea * 255).astype(np.uint8)).resize((256, 171), Image.BICUBIC)
    return np.asarray(pixels, np.float32) / 255.0


def test_default_schedule_raises_the_objective(spec, cat256, models) -> None:
    """The default settings raise the objective they climb by 2.5x (Lite0) and 3x (VGG16).

    Lite0 dreams through a copy whose ReLU6 units are plain ReLUs (``relu6="unbounded"``,
    the default), with the squared-activation loss; VGG16 with its tuned preset. Octaves
    follow the image size (2 at 256 px, 1 at 128 px). The defaults damp colour changes
    (chroma 0.3), so Lite0's objective rises less than with free colours (2.9 here, 4.5
    before): a gentler dream that keeps faces, chosen from the contact sheets of
    docs/make_deepdream_defaults_sheet.py. Figures for other photos and sizes are in
    docs/filters/deepdream.md.
    """
    ratios = {}
    for values, image in (({}, cat256), ({"model": "vgg16-hed"}, cat256[::2, ::2].copy())):
        out = dream(spec, image, values, models)
        settings = settings_for(values)
        model = models.get(settings.model)
        before = engine.objective_value(image, model, settings)
        ratios[settings.model] = engine.objective_value(out, model, settings) / before
    print("objective after / before, default schedule:", ratios)
    assert ratios["lite0"] >= 2.5, ratios
    assert ratios["vgg16-hed"] >= 3.0, ratios


def test_mask_is_respected(spec, cat, models, tmp_path: Path) -> None:
    mask = np.zeros(cat.shape[:2], np.uint8)
    mask[:, 80:] = 255
    path = tmp_path / "mask.png"
    Image.fromarray(mask, "L").save(path)
    out = dream(spec, cat, {**FAST, "mask": str(path), "mask_feather": 6}, models)
    np.testing.assert_array_equal(out[:, :80], cat[:, :80])  # untouched, bit for bit
    assert np.abs(out[:, 90:] - cat[:, 90:]).mean() > 0.01
    inverted = dream(spec, cat, {**FAST, "mask": str(path), "mask_invert": True}, models)
    np.testing.assert_array_equal(inverted[:, 80:], cat[:, 80:])
    assert np.abs(inverted[:, :70] - cat[:, :70]).mean() > 0.01


def test_alpha_untouched_and_same_seed_same_bytes(spec, cat, models) -> None:
    alpha = np.linspace(0, 1, cat.shape[0] * cat.shape[1], dtype=np.float32).reshape(cat.shape[:2])
    rgba = np.concatenate([cat, alpha[:, :, None]], axis=2)
    first = dream(spec, rgba, FAST, models, seed=3)
    second = dream(spec, rgba, FAST, models, seed=3)
    other = dream(spec, rgba, FAST, models, seed=4)
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != other.tobytes()  # the seed drives the jitter
    np.testing.assert_array_equal(first[..., 3], alpha)


def test_alpha_as_mask(spec, cat, models, tmp_path: Path) -> None:
    """mask_alpha: transparent pixels keep their colour bit for bit, opaque ones dream; off, all dream."""
    alpha = np.ones(cat.shape[:2], np.float32)
    alpha[:, :70] = 0.0
    alpha[:, 70:90] = np.linspace(0, 1, 20, dtype=np.float32)  # a soft edge
    rgba = np.concatenate([cat, alpha[:, :, None]], axis=2)
    masked = dream(spec, rgba, {**FAST, "mask_alpha": True}, models)
    np.testing.assert_array_equal(masked[:, :71, :3], cat[:, :71])
    assert np.abs(masked[:, 100:, :3] - cat[:, 100:]).mean() > 0.01
    np.testing.assert_array_equal(masked[..., 3], alpha)
    unmasked = dream(spec, rgba, FAST, models)  # the control: without the flag, alpha = 0 pixels dream too
    assert np.abs(unmasked[:, :70, :3] - cat[:, :70]).mean() > 0.01
    # With a mask file as well, the two multiply.
    mask = np.zeros(cat.shape[:2], np.uint8)
    mask[:60] = 255
    path = tmp_path / "mask.png"
    Image.fromarray(mask, "L").save(path)
    both = dream(spec, rgba, {**FAST, "mask_alpha": True, "mask": str(path)}, models)
    np.testing.assert_array_equal(both[:, :71, :3], cat[:, :71])
    np.testing.assert_array_equal(both[60:, :, :3], cat[60:])
    assert np.abs(both[:50, 100:, :3] - cat[:50, 100:]).mean() > 0.01
    # An RGB image has no alpha: the flag changes nothing.
    flagged = dream(spec, cat, {**FAST, "mask_alpha": True}, models)
    np.testing.assert_array_equal(flagged, dream(spec, cat, FAST, models))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 5), (31, 40), (200, 12)])
def test_tiny_and_thin_images_are_handled(spec, models, shape) -> None:
    image = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    out = dream(spec, image, FAST, models)
    assert out.shape == image.shape and np.isfinite(out).all()


def test_tiled_gradient_is_seamless(models) -> None:
    """Overlap-discard tiles reproduce the whole-image gradient; naive tiles do not (the control)."""
    vgg = models.get("vgg16-hed")
    settings = engine.DreamSettings(model="vgg16-hed", layers=(("block3_conv3", 1.0),))
    objective = engine.build_objective(vgg, settings)
    image = np.asarray(
        Image.fromarray((np.random.default_rng(1).random((36, 48, 3)) * 255).astype(np.uint8)).resize((192, 144)),
        np.float32,
    ) / 255.0
    _, whole = engine.tiled_gradient(image, objective, (144, 192))
    _, tiled = engine.tiled_gradient(image, objective, (96, 96), shift=(5, 17))
    rolled = np.roll(engine.tiled_gradient(np.roll(image, (5, 17), (0, 1)), objective, (144, 192))[1], (-5, -17), (0, 1))
    error = np.abs(tiled - rolled).mean() / np.abs(rolled).mean()
    assert error < 0.01, error

    def naive(height: int, width: int, window, margin, align=1):  # non-overlapping tiles
        boxes = [(y, min(y + 48, height), x, min(x + 48, width)) for y in range(0, height, 48) for x in range(0, width, 48)]
        return [tiling.Tile(box, box) for box in boxes]

    original = tiling.plan_tiles
    try:
        tiling.plan_tiles = naive
        _, seamy = engine.tiled_gradient(image, objective, (96, 96))
    finally:
        tiling.plan_tiles = original
    seamy *= np.abs(whole).mean() / np.abs(seamy).mean()
    border_error = np.abs(seamy - whole)[:, 46:50].mean() / np.abs(whole).mean()
    assert border_error > 0.1, border_error  # the seam metric does see naive seams


def test_lite0_tile_errors_do_not_gather_at_tile_borders(cat, models) -> None:
    """Lite0 is less local than VGG, so tiles change its gradient a little everywhere, but not at the seams."""
    objective = engine.build_objective(models.get("lite0"), engine.DreamSettings())
    image = np.asarray(Image.fromarray((cat * 255).astype(np.uint8)).resize((256, 192)), np.float32) / 255.0
    _, whole = engine.tiled_gradient(image, objective, (192, 256))
    tiles = tiling.plan_tiles(192, 256, (128, 128), engine.TILE_MARGIN, objective.stride)
    _, tiled = engine.tiled_gradient(image, objective, (128, 128))
    error = np.abs(tiled - whole).mean(axis=2)
    band = np.zeros(error.shape, bool)
    for tile in tiles:
        y0, y1, x0, x1 = tile.core
        for x in (x0, x1):
            if 0 < x < 256:
                band[y0:y1, x - 2 : x + 2] = True
        for y in (y0, y1):
            if 0 < y < 192:
                band[y - 2 : y + 2, x0:x1] = True
    ratio = error[band].mean() / error[~band].mean()
    print("lite0 border/interior gradient error ratio:", ratio)
    assert len(tiles) > 1 and ratio < 1.5, ratio


def test_plan_tiles_cover_exactly_with_equal_windows() -> None:
    for height, width, window, align in ((500, 333, (128, 128), 16), (64, 1000, (64, 200), 32), (50, 50, (64, 64), 1)):
        tiles = tiling.plan_tiles(height, width, window, 32, align)
        cover = np.zeros((height, width), int)
        for tile in tiles:
            y0, y1, x0, x1 = tile.core
            cover[y0:y1, x0:x1] += 1
            wy0, wy1, wx0, wx1 = tile.window
            assert wy0 <= y0 and y1 <= wy1 and wx0 <= x0 and x1 <= wx1
            assert 0 <= wy0 and wy1 <= height and 0 <= wx0 and wx1 <= width
        assert (cover == 1).all()
        assert len({(t.window[1] - t.window[0], t.window[3] - t.window[2]) for t in tiles}) == 1
    image = np.arange(40 * 30 * 3, dtype=np.float32).reshape(40, 30, 3)
    tile = tiling.Tile((8, 24, 4, 20), (10, 20, 6, 18))
    np.testing.assert_array_equal(tiling.read_window(image, tile, (3, -7)), np.roll(image, (3, -7), (0, 1))[8:24, 4:20])


def test_whole_image_roll_happens_in_the_graph(cat, models) -> None:
    """A whole-image step with a shift is the un-rolled gradient of the rolled image."""
    objective = engine.build_objective(models.get("lite0"), engine.DreamSettings())
    loss, rolled_inside = engine.tiled_gradient(cat, objective, cat.shape[:2], shift=(7, 30))
    loss_outside, outside = engine.tiled_gradient(np.roll(cat, (7, 30), (0, 1)), objective, cat.shape[:2])
    np.testing.assert_allclose(rolled_inside, np.roll(outside, (-7, -30), (0, 1)), rtol=1e-4, atol=1e-7)
    assert loss == pytest.approx(loss_outside, rel=1e-5)
    _, unrolled = engine.tiled_gradient(cat, objective, cat.shape[:2])
    assert np.abs(unrolled - rolled_inside).mean() > 0.05 * np.abs(unrolled).mean()  # the shift matters


def test_windows_whole_when_they_fit_and_tight_when_not(models) -> None:
    objective = engine.build_objective(models.get("lite0"), engine.DreamSettings())
    settings = engine.DreamSettings(memory_mb=64)
    budget = 64 * 2**20 / objective.bytes_per_pixel
    assert engine.plan_window(settings, objective, 200, 300) == (200, 300)  # fits: one call
    for height, width in ((400, 500), (333, 1000), (1500, 90)):
        window = engine.plan_window(settings, objective, height, width)
        assert window[0] * window[1] <= budget and window != (height, width)
        tiles = tiling.plan_tiles(height, width, window, engine.TILE_MARGIN, objective.stride)
        computed = sum(tile.window_area for tile in tiles)
        # Each core keeps at most a margin (plus the stride snap) on every side: no near-duplicate windows.
        assert computed <= height * width * 1.7, (height, width, window, len(tiles))
    # A side just above the budget gets two half windows, not a full one and a sliver.
    window = tiling.window_shape_for_budget(1298, 1731, 1_500_000, margin=32, align=16)
    tiles = tiling.plan_tiles(1298, 1731, window, 32, 16)
    assert len(tiles) == 2 and sum(t.window_area for t in tiles) < 1.15 * 1298 * 1731
    assert engine.plan_window(engine.DreamSettings(tile_size=128), objective, 200, 300)[1] <= 128


def test_gaussian_blur_in_bands_and_in_place() -> None:
    image = np.random.default_rng(2).standard_normal((700, 90, 3)).astype(np.float32)
    kernel = smoothing._gaussian_kernel(1.5)
    reference = smoothing._convolve_axis(smoothing._convolve_axis(image, kernel, 0), kernel, 1)
    np.testing.assert_array_equal(smoothing.gaussian_blur(image, 1.5), reference)
    smoothing.gaussian_blur(image, 1.5, out=image)  # in place, band by band
    np.testing.assert_array_equal(image, reference)


def test_laplacian_normalisation_drops_flat_colour() -> None:
    """A constant colour cast carries no gradient step; band-pass structure does."""
    rng = np.random.default_rng(3)
    detail = rng.standard_normal((96, 128, 3)).astype(np.float32)
    cast = np.zeros_like(detail) + np.array([5.0, -5.0, 5.0], np.float32)  # magenta/green
    out = smoothing.laplacian_normalize(detail + cast)
    assert np.abs(out.mean(axis=(0, 1))).max() < 0.05 * out.std()
    assert np.corrcoef(out.ravel(), detail.ravel())[0, 1] > 0.8


def test_chroma_zero_dreams_in_brightness_only(spec, cat, models) -> None:
    grey = dream(spec, cat, {**FAST, "chroma": 0.0, "clip": False}, models) - cat
    colour = dream(spec, cat, FAST, models) - cat
    spread = lambda delta: np.abs(delta - delta.mean(axis=2, keepdims=True)).mean()  # noqa: E731
    assert spread(grey) < 0.02 * np.abs(grey).mean()  # clip at the end only: nearly grey changes
    assert spread(colour) > 0.2 * np.abs(colour).mean()


# --------------------------------------------------------------------------- controls
def test_bfloat16_dreams_the_same_picture_deterministically(spec, cat, models) -> None:
    """VGG16 in bfloat16 (``auto`` on AVX512_BF16/AMX CPUs): the float32 dream up to rounding, same bytes per seed."""
    from neurofilters.filters.gradients import resolve_precision

    values = {**FAST, "model": "vgg16-hed"}
    single = dream(spec, cat, {**values, "precision": "float32"}, models)
    half = dream(spec, cat, {**values, "precision": "bfloat16"}, models)
    np.testing.assert_array_equal(dream(spec, cat, {**values, "precision": "bfloat16"}, models), half)
    change = np.abs(single - cat).mean()
    difference = np.abs(half - single).mean()
    assert 0 < difference < 0.35 * change, (difference, change)
    automatic = dream(spec, cat, values, models)
    expected = half if resolve_precision("auto", models.get("vgg16-hed")) == "bfloat16" else single
    np.testing.assert_array_equal(automatic, expected)


def test_objectives_guide_and_losses_change_the_result(spec, cat, models, tmp_path: Path) -> None:
    from skimage import data

    guide = tmp_path / "guide.png"
    Image.fromarray(data.coffee()).resize((96, 64)).save(guide)
    base = dream(spec, cat, FAST, models)
    for extra in (
        {"objective": "channel", "channel": 5},
        {"objective": "neuron", "channel": 5},
        {"loss": "mean"},
        {"guide": str(guide)},
        {"normalize": "mean-abs", "smoothing": "gaussian", "detail": False},
    ):
        out = dream(spec, cat, {**FAST, **extra}, models)
        assert np.isfinite(out).all()
        assert np.abs(out - base).mean() > 1e-3, extra


def test_loss_ceiling_stops_early(spec, cat, models) -> None:
    messages: list[str] = []
    dream(spec, cat, {**FAST, "steps": 8, "loss_ceiling": 1e-6}, models, progress=lambda f, m: messages.append(m))
    steps = [m for m in messages if "step" in m]
    assert steps and all("step 1/8" in m for m in steps), steps


def test_frames_are_emitted_for_the_host(spec, cat, models) -> None:
    frames: dict[str, np.ndarray] = {}
    out = dream(spec, cat, {"octaves": 1, "steps": 2, "frames": 3}, models, emit=frames.__setitem__)
    assert sorted(frames) == ["frame-00000", "frame-00001", "frame-00002"]
    np.testing.assert_array_equal(frames["frame-00002"], out)
    assert np.abs(frames["frame-00000"] - frames["frame-00001"]).max() > 0.01


def test_progress_moves_and_cancel_stops(spec, cat, models) -> None:
    fractions: list[float] = []
    dream(spec, cat, FAST, models, progress=lambda f, m: fractions.append(f))
    assert len(fractions) >= 6 and fractions == sorted(fractions) and fractions[-1] == 1.0
    context = FilterContext(models=models)

    def cancel_after_a_while(fraction: float, message: str) -> None:
        if fraction > 0.3:
            context.cancel()

    context._progress = cancel_after_a_while
    with pytest.raises(FilterCancelled):
        apply_filter(spec, cat, {"steps": 5}, context=context)


def test_long_dreams_announce_their_duration(spec, cat, models, monkeypatch) -> None:
    """After the first timed step every message carries the expected duration when it is long."""
    messages: list[str] = []
    quick = engine.OctaveProgress([(100, 100), (140, 140)], settings_for(FAST), lambda f, m: messages.append(m))
    for step in (1, 2, 3):
        quick.reporter(0)(step, 1.0)
    assert quick.expected_s is not None and not any("in all" in m for m in messages)  # a short dream stays quiet
    monkeypatch.setattr(engine, "LONG_DREAM_S", 0.0)
    messages.clear()
    dream(spec, cat, FAST, models, progress=lambda f, m: messages.append(m))
    steps = [m for m in messages if "step" in m]
    assert "in all" not in steps[0] and all("in all" in m for m in steps[1:]), steps
    assert engine._duration(42) == "42 s" and engine._duration(600) == "10 min" and engine._duration(5400) == "1 h 30 min"


def test_auto_octaves_grow_with_the_image() -> None:
    """octaves=0: 2 octaves at 300 px, 4 at 1000 px, 6 at 3000 px (scale 1.4); 1 for tiny images."""
    counts = {side: engine.auto_octaves(side, side * 2 // 3, 1.4) for side in (64, 300, 1000, 3000, 100000)}
    assert counts == {64: 1, 300: 2, 1000: 4, 3000: 6, 100000: 11}
    assert engine.auto_octaves(200, 1000, 1.4) == engine.auto_octaves(1000, 1000, 1.4)  # the longer side counts
    assert engine.auto_octaves(1000, 1000, 1.2) > engine.auto_octaves(1000, 1000, 1.4)  # same range, finer steps
    settings = settings_for({})
    assert settings.octaves == 0
    _, shapes = engine.dream_schedule(667, 1000, settings, 32)
    assert len(shapes) == 4 and shapes[-1] == (667, 1000)


@pytest.mark.parametrize(
    ("values", "param", "fragment"),
    [
        ({"layers": "block10_expand_actt"}, "layers", "block10_expand_act"),
        ({"objective": "channel", "channel": 100000}, "channel", "channel=100000"),
        ({"layers": "block5_expand_act:0"}, "layers", "non-zero"),
    ],
)
def test_parameter_errors_name_value_and_fix(spec, cat, models, values, param, fragment) -> None:
    with pytest.raises(ParameterError) as caught:
        dream(spec, cat, {**FAST, **values}, models)
    assert caught.value.param == param and fragment in str(caught.value)


def test_bad_mask_file_is_a_parameter_error(spec, cat, models, tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    path.write_text("not an image")
    with pytest.raises(ParameterError, match="mask"):
        dream(spec, cat, {**FAST, "mask": str(path)}, models)


def test_inception_presets_need_downloaded_weights(spec, cat, models) -> None:
    """Offline, the InceptionV3 presets stop with a clear error; online they dream."""
    try:
        out = dream(spec, cat, {"preset": "keras-example", "steps": 2, "octaves": 1}, models)
    except plugin_host.NeurofiltersError as error:
        assert "inception" in str(error).lower(), error
    else:
        assert np.abs(out - cat).mean() > 1e-3
