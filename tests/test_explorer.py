"""The network explorer: activation-maps, feature-inversion, explore patches / similar (real Lite0, real photos)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import ModelCache, ParameterError, apply_filter, build_registry, get_registry


def _model(name: str = "lite0"):
    return ModelCache(get_registry().get_model).get(name)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurofilters", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image) and a slightly cropped copy of the astronaut (the original is the query)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "rocket", "immunohistochemistry", "colorwheel"):
        Image.fromarray(getattr(data, name)()[:, :, :3]).resize((160, 120)).save(folder / f"{name}.png")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(folder.parent / "astronaut-query.png")
    astronaut.crop((16, 10, 496, 500)).resize((150, 153)).save(folder / "zz-astronaut-crop.png")
    return folder


def test_grid_shows_the_most_active_channels_labelled(chelsea: np.ndarray) -> None:
    spec = build_registry(autoload=False).get_filter("activation-maps")
    from neurofilters.filters.explorer.features import activations, work_image

    params = {"layer": "block2", "count": 6, "cell_size": 32, "work_size": 96}
    result = apply_filter(spec, chelsea, params, seed=0)
    maps = activations(_model(), ["block2_expand_act"], work_image(chelsea, 96)[None])[0][0]
    # 6 cells of 32 px (+ a label strip) in a 3 x 2 grid
    assert result.shape[0] > 2 * 32 and result.shape[1] > 3 * 32 and result.shape[2] == 3
    from neurofilters.filters.explorer.maps import choose_channels

    top = choose_channels(maps, "top", 6, "")
    assert top == list(np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:6])
    # listing channels gives a different picture; shared normalisation changes it again
    listed = apply_filter(spec, chelsea, {**params, "select": "list", "channels": "0-5"}, seed=0)
    shared = apply_filter(spec, chelsea, {**params, "normalize": "shared"}, seed=0)
    assert listed.shape == result.shape and not np.array_equal(listed, result)
    assert not np.array_equal(shared, result)


def test_normalisation_per_channel_and_shared() -> None:
    from neurofilters.filters.explorer.maps import normalise_maps

    maps = np.stack([np.linspace(0, 1, 16).reshape(4, 4), np.linspace(0, 4, 16).reshape(4, 4)], axis=-1)
    own = normalise_maps(maps, [0, 1], "channel")
    np.testing.assert_allclose(own[..., 0], own[..., 1], atol=1e-6)
    shared = normalise_maps(maps, [0, 1], "shared")
    assert shared[..., 1].max() == pytest.approx(1.0) and shared[..., 0].max() == pytest.approx(0.25)


def test_channel_list_errors_name_the_value() -> None:
    from neurofilters.filters.explorer.maps import parse_channel_list

    assert parse_channel_list("3, 1,5-7", 10) == [3, 1, 5, 6, 7]
    with pytest.raises(ParameterError, match=r"between 0 and 9.*'3,12'"):
        parse_channel_list("3,12", 10)
    with pytest.raises(ParameterError, match="Received: channels='a'"):
        parse_channel_list("a", 10)


def test_overlay_keeps_the_size_and_follows_the_map(chelsea: np.ndarray) -> None:
    """One channel blended over the photo: where the map is high, the photo changes more."""
    spec = build_registry(autoload=False).get_filter("activation-maps")
    image = chelsea[::2, ::2]
    result = apply_filter(spec, image, {"display": "overlay", "layer": "block3", "channel": 12, "work_size": 112}, seed=0)
    assert result.shape == image.shape
    from neurofilters.filters.explorer.features import activations, work_image
    from neurofilters.filters.explorer.maps import map_over_image
    from neurofilters.filters.explorer.receptive import receptive_field

    model = _model()
    work = work_image(image, 112)
    values = activations(model, ["block3_expand_act"], work[None])[0][0][..., 12]
    field = receptive_field(model.keras_model, "block3_expand_act", work.shape[:2])
    upsampled = map_over_image(values, field, *image.shape[:2])
    change = np.abs(result - image).mean(axis=2)
    assert np.corrcoef(upsampled.ravel(), change.ravel())[0, 1] > 0.5


def test_a_layer_without_positions_is_refused(chelsea: np.ndarray) -> None:
    spec = build_registry(autoload=False).get_filter("activation-maps")
    with pytest.raises(ParameterError, match="convolutional layer"):
        apply_filter(spec, chelsea, {"layer": "logits"}, seed=0)


@pytest.mark.slow
def test_inversion_error_falls_for_shallower_layers(chelsea: np.ndarray) -> None:
    from neurofilters.filters.explorer.features import work_image
    from neurofilters.filters.explorer.inversion import invert

    model = _model()
    photo = work_image(chelsea, 64)
    errors = {
        layer: invert(model, layer, photo, steps=60, rng=np.random.default_rng(0)).pixel_error
        for layer in ("stem_act", "block2_expand_act", "block10_expand_act")
    }
    assert errors["stem_act"] < errors["block2_expand_act"] < errors["block10_expand_act"], errors
    assert errors["stem_act"] < 0.1  # close to the photo, not merely less bad


@pytest.mark.slow
def test_inversion_filter_is_deterministic_and_reports_errors(chelsea: np.ndarray) -> None:
    spec = build_registry(autoload=False).get_filter("feature-inversion")
    messages: list[str] = []
    params = {"layer": "stem", "steps": 8, "work_size": 48}
    first = apply_filter(spec, chelsea[::4, ::4], params, seed=3, report=messages.append)
    again = apply_filter(spec, chelsea[::4, ::4], params, seed=3)
    assert np.array_equal(first, again)
    assert any("relative feature error" in m and "pixel RMS error" in m for m in messages)  # the run's summary


def test_patches_are_the_best_positions_cropped_at_their_receptive_field(photo_folder: Path) -> None:
    from neurofilters.filters.explorer.features import activations
    from neurofilters.filters.explorer.patches import crop_field, find_images, load_work_image, top_patches
    from neurofilters.filters.explorer.receptive import receptive_field

    model = _model()
    layer = "block3_expand_act"
    paths = find_images(photo_folder)
    patches = top_patches(model, layer, 7, paths, k=4, per_image=1, size=96)
    # independent: each image's maximum, computed directly, sorted
    direct = []
    for path in paths:
        values = activations(model, [layer], load_work_image(path, 96)[None])[0][0][..., 7]
        direct.append((float(values.max()), str(path)))
    direct.sort(reverse=True)
    assert [p.path for p in patches] == [name for _, name in direct[:4]]
    np.testing.assert_allclose([p.score for p in patches], [score for score, _ in direct[:4]], rtol=1e-5)
    image = load_work_image(Path(patches[0].path), 96)
    field = receptive_field(model.keras_model, layer, image.shape[:2])
    crop = crop_field(image, field.box(patches[0].y, patches[0].x, clip=False))
    assert crop.shape[:2] == (field.rows.size, field.cols.size)


@pytest.mark.slow
def test_explore_patches_command_writes_a_sheet(photo_folder: Path, tmp_path: Path) -> None:
    """The real command line, in its own process."""
    sheet = tmp_path / "sheet.png"
    done = _cli("explore", "patches", "lite0", "block3", "7", str(photo_folder), "-o", str(sheet), "-k", "4", "--size", "96", "--tile", "64")
    assert done.returncode == 0, done.stderr
    with Image.open(sheet) as picture:
        assert picture.width > 2 * 64 and picture.height > 64
    assert done.stdout.count("(y=") == 4


@pytest.mark.slow
def test_explore_errors_name_the_value(photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from neurofilters.plugin_host.cli.main import main

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    sheet = str(tmp_path / "sheet.png")
    assert main(["explore", "patches", "lite0", "block3", "999", str(photo_folder), "-o", sheet]) == 2
    assert "between 0 and 143" in capsys.readouterr().err
    assert main(["explore", "patches", "lite0", "block3", "1", str(photo_folder), "-o", sheet, "-k", "0"]) == 2
    assert 'Received: --top 0' in capsys.readouterr().err  # declared: the flag, as filters
    assert main(["explore", "similar", str(tmp_path / "missing.png"), str(photo_folder), "--layer", "block3"]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["explore", "similar", str(photo_folder / "coffee.png"), str(tmp_path / "nowhere"), "--layer", "block3"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not Path(sheet).exists()


def test_similar_ranks_the_cropped_copy_first_and_caches(photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurofilters.filters.explorer.patches import find_images, load_work_image
    from neurofilters.filters.explorer.similar import FeatureCache, descriptor, folder_descriptors, rank

    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", str(tmp_path / "cache"))
    model = _model()
    paths = find_images(photo_folder)
    query_image = load_work_image(photo_folder.parent / "astronaut-query.png", 128)
    for layer in ("block2_expand_act", "block12_expand_act"):
        cache = FeatureCache(tmp_path / f"{layer}.npz")
        vectors = folder_descriptors(model, layer, paths, size=128, cache=cache)
        query = descriptor(np.asarray(model.feature_model([layer])(query_image[None])[0][0]))
        order, similarities = rank(query, vectors)
        assert paths[order[0]].name == "zz-astronaut-crop.png", (layer, [paths[i].name for i in order])
        assert similarities[0] > similarities[1]
        # the second query reads every descriptor from the cache (nothing is computed)
        again = FeatureCache(tmp_path / f"{layer}.npz")
        assert all(again.get(path) is not None for path in paths)
        calls: list[int] = []
        monkeypatch.setattr("neurofilters.filters.explorer.similar.load_work_image", lambda *a, **k: calls.append(1))
        np.testing.assert_array_equal(folder_descriptors(model, layer, paths, size=128, cache=again), vectors)
        assert calls == []
        monkeypatch.undo()
        monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", str(tmp_path / "cache"))
    # a changed file is recomputed
    cache = FeatureCache(tmp_path / "block2_expand_act.npz")
    Image.open(paths[0]).transpose(Image.FLIP_LEFT_RIGHT).save(paths[0].with_name("extra.png"))
    assert cache.get(paths[0].with_name("extra.png")) is None
    paths[0].with_name("extra.png").unlink()


def test_explore_similar_command(photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from neurofilters.plugin_host.cli.main import main

    monkeypatch.setenv("NEUROFILTERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    args = ["explore", "similar", str(photo_folder.parent / "astronaut-query.png"), str(photo_folder), "--layer", "block3",
            "--top", "3", "--size", "96", "-o", str(tmp_path / "s.png")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("zz-astronaut-crop.png")
    assert list((tmp_path / "cache" / "features").glob("*.npz"))
    assert (tmp_path / "s.png").is_file()
    assert main(args) == 0 and capsys.readouterr().out == out  # from the cache: the same ranking


@pytest.fixture(scope="module")
def square_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos at 224 x 224: the size the saliency filter runs Lite0 at, so its positions can be compared."""
    from skimage import data

    folder = tmp_path_factory.mktemp("square")
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(data, name)()[:, :, :3]).resize((224, 224)).save(folder / f"{name}.png")
    return folder


def test_patch_maps_are_the_saliency_filters_map_at_the_patch(square_folder: Path) -> None:
    """The map beside a patch is the saliency filter's guided backprop of that unit, cropped to the patch's field."""
    import neurofilters
    from neurofilters.filters.explorer.patches import find_images, load_work_image, patch_map, top_patches
    from neurofilters.filters.explorer.receptive import receptive_field
    from neurofilters.filters.attribution.neuron import neuron_guided_backprop
    from neurofilters.filters.attribution.methods import normalise

    model = _model()
    layer, channel = "block3_expand_act", 7
    patches = top_patches(model, layer, channel, find_images(square_folder), k=2, size=224)
    for patch in patches:
        image = load_work_image(Path(patch.path), 224, model.min_size)
        assert image.shape[:2] == (224, 224)
        field = receptive_field(model.keras_model, layer, image.shape[:2])
        rows, cols = field.rows.length, field.cols.length
        attribution = neuron_guided_backprop(model, image, layer, channel, (patch.y, patch.x))
        # the filter, told the same cell as a fraction of the grid, on the same array: the same map
        filtered = neurofilters.apply(
            "saliency", image, method="guided-backprop", target="neuron", target_layer=layer, channel=channel,
            neuron_y=(patch.y + 0.5) / rows, neuron_x=(patch.x + 0.5) / cols, display="grey", smoothing=0.0,
        ).outputs["saliency"][..., 0]
        np.testing.assert_allclose(filtered, normalise(attribution.map, sparse=True), atol=1e-5)
        # everything the unit depends on lies in its receptive field; the crop is that field
        top, left, bottom, right = field.box(patch.y, patch.x, clip=True)
        outside = attribution.map.copy()
        outside[top:bottom, left:right] = 0.0
        assert attribution.map.max() > 0 and outside.max() == 0.0
        crop = patch_map(model, layer, channel, image, patch)
        assert crop.shape == (field.rows.size, field.cols.size)
        full_top, full_left, _, _ = field.box(patch.y, patch.x, clip=False)
        by, bx = np.unravel_index(int(np.argmax(crop)), crop.shape)
        assert top <= by + full_top < bottom and left <= bx + full_left < right
        assert crop.max() == pytest.approx(1.0)
        # the crop is the filter's map at the patch's box: the same pixels, up to the scale (both clip at 1)
        part = filtered[top:bottom, left:right]
        shown = crop[top - full_top : bottom - full_top, left - full_left : right - full_left]
        both = (shown > 1e-3) & (shown < 1) & (part > 1e-3) & (part < 1)
        assert both.sum() > 20
        ratios = shown[both] / part[both]
        np.testing.assert_allclose(ratios, np.median(ratios), rtol=1e-3)
        assert np.count_nonzero(crop) == np.count_nonzero(filtered)  # none of the map is left out


def test_patch_maps_line_up_on_images_of_any_shape(photo_folder: Path) -> None:
    """160 x 120 photos at --size 96: the map's non-zero pixels are inside the patch's box, on the searched array."""
    from neurofilters.filters.explorer.patches import find_images, load_work_image, top_patches
    from neurofilters.filters.explorer.receptive import receptive_field
    from neurofilters.filters.attribution.neuron import neuron_guided_backprop

    model = _model()
    layer = "block3_expand_act"
    for patch in top_patches(model, layer, 7, find_images(photo_folder), k=3, size=96):
        image = load_work_image(Path(patch.path), 96, model.min_size)
        top, left, bottom, right = receptive_field(model.keras_model, layer, image.shape[:2]).box(patch.y, patch.x)
        values = neuron_guided_backprop(model, image, layer, 7, (patch.y, patch.x)).map
        rows, cols = np.nonzero(values)
        assert rows.size and rows.min() >= top and rows.max() < bottom and cols.min() >= left and cols.max() < right
    with pytest.raises(ParameterError, match=r"Received: position=\(99, 0\)"):
        neuron_guided_backprop(model, image, layer, 7, (99, 0))


def test_patch_sheet_with_maps_has_the_map_column_and_without_is_unchanged(photo_folder: Path) -> None:
    from neurofilters.filters.explorer.patches import (
        MAP_GAP, crop_field, find_images, load_work_image, patch_map, patch_sheet, top_patches,
    )
    from neurofilters.filters.explorer.receptive import receptive_field
    from neurofilters.filters.explorer.render import grid, label_tile, resize

    model = _model()
    layer, tile = "block3_expand_act", 48
    patches = top_patches(model, layer, 7, find_images(photo_folder), k=1, size=96)
    plain = patch_sheet(model, layer, patches, size=96, tile=tile)
    with_maps = patch_sheet(model, layer, patches, size=96, tile=tile, channel=7, maps=True)
    gap = 4  # grid's margin
    assert plain.shape[1] == tile + 2 * gap
    assert with_maps.shape[1] == 2 * tile + MAP_GAP + 2 * gap
    image = load_work_image(Path(patches[0].path), 96, model.min_size)
    grey = patch_map(model, layer, 7, image, patches[0])
    shown = with_maps[gap : gap + tile, gap + tile + MAP_GAP : gap + 2 * tile + MAP_GAP]
    np.testing.assert_allclose(shown, resize(np.repeat(grey[:, :, None], 3, axis=2), tile, tile), atol=1 / 255)
    np.testing.assert_allclose(with_maps[gap : gap + tile, gap : gap + tile], plain[gap : gap + tile, gap : gap + tile], atol=1 / 255)
    # without --maps: the sheet as it was drawn before the option existed
    field = receptive_field(model.keras_model, layer, image.shape[:2])
    label = f"{patches[0].score:.2f}  {Path(patches[0].path).name}"
    before = grid([label_tile(resize(crop_field(image, field.box(patches[0].y, patches[0].x, clip=False)), tile, tile), label)])
    assert np.array_equal(plain, before)
    with pytest.raises(ValueError, match="needs the channel"):
        patch_sheet(model, layer, patches, size=96, tile=tile, maps=True)


@pytest.mark.slow
def test_explore_patches_maps_command(photo_folder: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "maps.png"
    done = _cli("explore", "patches", "lite0", "block3", "7", str(photo_folder), "-o", str(sheet), "-k", "2", "--size", "96",
                "--tile", "64", "--maps")
    assert done.returncode == 0, done.stderr
    with Image.open(sheet) as picture:
        assert picture.width == 2 * (2 * 64 + 4) + 3 * 4  # two patch-and-map tiles side by side
    assert done.stdout.count("(y=") == 2
