"""``neurofilters atlas``: a static site, deterministic and resumable, checked in a real headless Chromium."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import ModelCache, get_registry



def _chromium() -> str | None:
    """Debian's chromium: found, or installed with apt-get where this runs as root (as the GIMP tests install debootstrap)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=600, env=env)
        except (OSError, subprocess.SubprocessError):
            return None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = _chromium()
    if path is None:
        pytest.skip("needs Debian's chromium package (apt-get install chromium; installed automatically when run as root)")
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    from neurofilters.filters.explorer.atlas import write_atlas

    photos = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(data, name)()).resize((120, 90)).save(photos / f"{name}.png")
    model = ModelCache(get_registry().get_model).get("lite0")
    out = tmp_path_factory.mktemp("atlas")
    reports: list[float] = []
    write_atlas(model, out, layers=["block2_expand_act", "block6_expand_act"], channels=2, steps=4, size=48, seed=1,
                images=sorted(photos.iterdir()), patches=2, work_size=96, progress=lambda f, m: reports.append(f))
    assert reports[-1] == 1.0 and any(0 < f < 1 for f in reports)
    return out


@pytest.mark.slow
def test_atlas_is_deterministic_and_resumes(atlas: Path, tmp_path: Path) -> None:
    from neurofilters.filters.explorer.atlas import write_atlas

    model = ModelCache(get_registry().get_model).get("lite0")
    settings = __import__("json").loads((atlas / "atlas.json").read_text())
    again = tmp_path / "again"
    # a run interrupted after its first picture: resume by rerunning; the result is byte-identical
    shutil.copytree(atlas, again)
    for picture in sorted(again.rglob("*.png"))[1:]:
        picture.unlink()
    (again / "index.html").unlink()
    first_mtime = sorted(again.rglob("*.png"))[0].stat().st_mtime_ns
    write_atlas(model, again, layers=settings["layers"], channels=2, steps=4, size=48, seed=1,
                images=[Path(p) for p in settings["images"]], patches=2, work_size=96)
    assert _digest(again) == _digest(atlas)
    assert sorted(again.rglob("*.png"))[0].stat().st_mtime_ns == first_mtime  # kept, not redone
    from neurofilters.plugin_host import UsageError

    with pytest.raises(UsageError, match="other settings"):
        write_atlas(model, again, layers=settings["layers"], channels=3, steps=4, size=48, seed=1)


@pytest.mark.slow
def test_atlas_page_is_self_contained(atlas: Path) -> None:
    page = (atlas / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for header in ("name", "type", "activation shape", "learnables"):
        assert f"<th>{header}</th>" in page
    assert "block6_expand_act" in page and "56 x 56 x 144" in page


@pytest.mark.slow
def test_atlas_in_a_real_headless_browser(atlas: Path, tmp_path: Path, chromium: str) -> None:
    """Chromium loads index.html from disk: no console error, no failed request, every image decoded; the screenshot has content."""
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
        page.goto((atlas / "index.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        boxes = page.evaluate(
            "Array.from(document.querySelectorAll('img.vis')).map(i => {const r = i.getBoundingClientRect();"
            " return [i.getAttribute('src'), r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]})"
        )
        shot = tmp_path / "atlas.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert len(images) == 2 * 2 * (1 + 2)  # layers x channels x (visualisation + patches)
    assert all(complete and width > 0 for _, complete, width in images), images
    pixels = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    assert pixels.std() > 20  # not a blank page
    # each visualisation is on the screenshot where the page put it, as written
    assert len(boxes) == 4
    for src, x, y, width, height in boxes:
        drawn = pixels[round(y) : round(y) + round(height), round(x) : round(x) + round(width)]
        written = np.asarray(Image.open(atlas / src).convert("RGB"), np.float32)
        assert drawn.shape == written.shape, src
        assert np.abs(drawn - written).mean() < 4.0, src


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
def test_atlas_of_a_fixed_input_size_keras_model(tmp_path: Path, shape: tuple[int, int], capsys: pytest.CaptureFixture[str]) -> None:
    """A ``.keras`` built on ``Input(shape=(H, W, 3))`` sees everything at H x W: the atlas works (was Keras' ValueError)."""
    import keras

    from neurofilters.plugin_host.cli.main import main

    inputs = keras.Input((*shape, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="first")(inputs)
    x = keras.layers.Conv2D(3, 3, strides=2, activation="relu", name="second")(x)
    outputs = keras.layers.Dense(2, name="scores")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    model_file = tmp_path / "fixed.keras"
    keras.Model(inputs, outputs).save(model_file)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate([(90, 120), (200, 60)]):  # landscape and portrait: the centre is cropped to the model's aspect
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(photos / f"p{index}.png")
    out = tmp_path / "site"
    code = main(["atlas", str(model_file), "-o", str(out), "--steps", "2", "--channels", "2", "--size", "40",
                 "--patches", "1", "--images", str(photos)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "ValueError" not in err
    page = (out / "index.html").read_text()
    assert f"Activation shapes for a {shape[0]} x {shape[1]} input" in page
    assert "not finished" not in page
    for layer in ("first", "second"):
        for channel in range(2):
            with Image.open(out / layer / f"vis-{channel:04d}.png") as picture:
                assert max(picture.size) == 40
            assert (out / layer / f"patch-{channel:04d}-00.png").is_file()
    loaded = ModelCache(get_registry().get_model).get(str(model_file))
    assert loaded.fixed_input == shape
    table = {info.name: info.output_shape for info in loaded.layer_table(224)}  # a fixed input takes no other size
    assert table["first"] == (1, shape[0] - 2, shape[1] - 2, 4)


def test_explore_on_a_fixed_input_size_keras_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """explore patches and explore similar resize each image's centre to the model's fixed input (was Keras' ValueError)."""
    import keras

    from neurofilters.plugin_host.cli.main import main

    inputs = keras.Input((48, 80, 3))
    outputs = keras.layers.Conv2D(3, 3, strides=2, activation="relu", name="conv")(inputs)
    model_file = tmp_path / "fixed.keras"
    keras.Model(inputs, outputs).save(model_file)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for index, size in enumerate([(90, 120), (200, 60), (64, 64)]):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(photos / f"p{index}.png")
    sheet = tmp_path / "sheet.png"
    assert main(["explore", "patches", str(model_file), "conv", "1", str(photos), "-o", str(sheet), "-k", "2"]) == 0, capsys.readouterr().err
    assert sheet.is_file()
    similar = tmp_path / "similar.png"
    code = main(["explore", "similar", str(photos / "p0.png"), str(photos), "--model", str(model_file), "--layer", "conv",
                 "-o", str(similar)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert similar.is_file() and "1.0000" in out and "ValueError" not in err


def test_atlas_maps_show_each_patchs_guided_backprop_beside_it(atlas: Path, tmp_path: Path) -> None:
    """``maps=True``: a map picture per patch, the saliency map of that unit on that image; without it, none."""
    import json

    from neurofilters.filters.explorer.atlas import write_atlas
    from neurofilters.filters.explorer.patches import Patch, load_work_image, patch_map
    from neurofilters.filters.explorer.render import resize

    assert not list(atlas.rglob("map-*.png")) and "guided-backprop" not in (atlas / "index.html").read_text()
    settings = json.loads((atlas / "atlas.json").read_text())
    assert "maps" not in settings  # an atlas written before --maps resumes with the same settings
    model = ModelCache(get_registry().get_model).get("lite0")
    out = tmp_path / "maps"
    layer = "block6_expand_act"
    write_atlas(model, out, layers=[layer], channels=1, steps=2, size=48, seed=1,
                images=[Path(p) for p in settings["images"]], patches=2, work_size=96, maps=True)
    page = (out / "index.html").read_text()
    assert page.count(f'src="{layer}/map-0000-') == 2 and 'class="patches maps"' in page
    assert json.loads((out / "atlas.json").read_text())["maps"] is True
    # the first map is the unit's guided backprop at the first patch's position: find the patch again
    best = max(
        (float(values.max()), path, divmod(int(np.argmax(values)), values.shape[1]))
        for path in settings["images"]
        for values in [np.asarray(model.feature_model([layer])(load_work_image(Path(path), 96, model.min_size)[None])[0])[0, :, :, 0]]
    )
    image = load_work_image(Path(best[1]), 96, model.min_size)
    grey = patch_map(model, layer, 0, image, Patch(best[0], best[1], *best[2]))
    expected = np.asarray(Image.fromarray((resize(np.repeat(grey[:, :, None], 3, axis=2), 96, 96) * 255 + 0.5).astype(np.uint8)))
    with Image.open(out / layer / "map-0000-00.png") as written:
        assert np.abs(np.asarray(written.convert("RGB"), np.int16) - expected).max() <= 1


def test_atlas_layer_table_lists_a_separate_head_and_counts_it(tmp_path: Path) -> None:
    """VGG's head is outside the backbone's graph: the atlas lists fc1, fc2, predictions and counts them in its total."""
    import keras

    from neurofilters.filters.explorer.atlas import write_atlas
    from neurofilters.filters.zoo.model import ZooModel

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = keras.layers.MaxPooling2D(4, name="block1_pool")(x)
    head = keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Flatten(name="flatten"),
                             keras.layers.Dense(12, activation="relu", name="fc1"), keras.layers.Dense(5, name="predictions")])
    model = ZooModel(name="small-vgg", kind="classifier", keras_model=keras.Model(inputs, x), preprocess=lambda images: images,
                     min_size=16, input_size=16, labels=[f"class {i}" for i in range(5)], classifier_head=head, head_input_size=16)
    write_atlas(model, tmp_path / "atlas", layers=["block1_conv1"], channels=1, steps=2, size=32, seed=0)
    page = (tmp_path / "atlas" / "index.html").read_text()
    total = model.keras_model.count_params() + head.count_params()
    assert f"{total:,} learnables" in page
    assert "<td>fc1</td><td>Dense</td><td>12</td>" in page and f'<td class="num">{128 * 12 + 12:,}</td>' in page
