"""Make the pictures of docs/filters/explorer.md (docs/assets/explorer-*), at web size.

* ``explorer-maps-lite0.jpg`` / ``explorer-maps-vgg16-hed.jpg``: the six most active
  channels of five layers, shallow to deep, on scikit-image's cat;
* ``explorer-inversion.jpg``: the cat rebuilt from four Lite0 layers, with the errors;
* ``explorer-patches.jpg``: ``explore patches`` over crops of scikit-image's photos;
* ``explorer-patches-maps.jpg``: the same search with ``--maps`` (each patch beside its guided-backprop map);
* ``explorer-similar.jpg``: ``explore similar`` (a query and its best matches);
* ``explorer-atlas.jpg``: a screenshot of a small atlas in headless Chromium.

Usage: ``python docs/make_explorer_gallery.py [--steps 200]`` (several minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ASSETS = Path(__file__).resolve().parent / "assets"
LAYERS = {
    "lite0": ["stem_act", "block2_expand_act", "block5_expand_act", "block10_expand_act", "block15_expand_act"],
    "vgg16-hed": ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"],
}


def _save(pixels: np.ndarray, name: str, width: int = 960) -> None:
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    target = ASSETS / name
    image.save(target, quality=88) if name.endswith(".jpg") else image.save(target)
    print(f"wrote {target} ({image.width}x{image.height})")


def progression(model_name: str, photo: np.ndarray) -> None:
    """Rows of the six most active maps per layer, shallow to deep."""
    from neurofilters.filters.explorer.features import activations, work_image
    from neurofilters.filters.explorer.maps import choose_channels, normalise_maps
    from neurofilters.filters.explorer.render import colorize, grid, label_tile, resize
    from neurofilters.plugin_host import ModelCache, get_registry

    model = ModelCache(get_registry().get_model).get(model_name)
    work = work_image(photo, 224)
    tiles = []
    for layer, maps in zip(LAYERS[model_name], activations(model, LAYERS[model_name], work[None])):
        maps = maps[0]
        tiles.append(label_tile(resize(work, 84, 112), f"{layer.replace('_expand_act', '')} {maps.shape[0]}x{maps.shape[1]}"))
        chosen = choose_channels(maps, "top", 6, "")
        scaled = normalise_maps(maps, chosen, "channel")
        for index, channel in enumerate(chosen):
            tile = resize(colorize(scaled[:, :, index]), 84, 112, nearest=True)
            tiles.append(label_tile(tile, f"ch {channel}: {maps[:, :, channel].mean():.2f}"))
    _save(grid(tiles, columns=7), f"explorer-maps-{model_name}.jpg")


def inversions(photo: np.ndarray, steps: int) -> None:
    """The photo and its reconstructions from four Lite0 layers."""
    from neurofilters.filters.explorer.features import work_image
    from neurofilters.filters.explorer.inversion import invert
    from neurofilters.filters.explorer.render import grid, label_tile
    from neurofilters.plugin_host import ModelCache, get_registry

    model = ModelCache(get_registry().get_model).get("lite0")
    work = work_image(photo, 160)
    tiles = [label_tile(work, "photo")]
    for layer in ("stem_act", "block2_expand_act", "block5_expand_act", "block10_expand_act"):
        result = invert(model, layer, work, steps=steps, rng=np.random.default_rng(0))
        tiles.append(label_tile(result.image, f"{layer.replace('_expand_act', '').replace('_act', '')}: RMS {result.pixel_error:.3f}"))
        print(f"{layer}: feature error {result.feature_error:.4f}, pixel RMS error {result.pixel_error:.4f}", flush=True)
    _save(grid(tiles, columns=5), "explorer-inversion.jpg")


def photo_folder(folder: Path) -> Path:
    """Crops of scikit-image's photos (patches and similar search run over them)."""
    from skimage import data

    rng = np.random.default_rng(0)
    sources = {name: getattr(data, name)()[:, :, :3] for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")}
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        height, width = source.shape[:2]
        for index in range(6):
            ch, cw = int(height * rng.uniform(0.35, 0.8)), int(width * rng.uniform(0.35, 0.8))
            top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
            Image.fromarray(source[top : top + ch, left : left + cw]).save(folder / f"{name}-{index}.png")
    return folder


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "neurofilters", *args], capture_output=True, text=True, check=True)
    return done.stdout


def patch_maps(folder: Path, scratch: Path) -> None:
    """The patch sheet with each patch's guided-backprop map (``explore patches --maps``)."""
    _cli("explore", "patches", "lite0", "block6", "52", str(folder), "-o", str(scratch / "patch-maps.png"), "-k", "6", "--tile", "112",
         "--maps")
    _save(np.asarray(Image.open(scratch / "patch-maps.png").convert("RGB"), np.float32) / 255, "explorer-patches-maps.jpg")


def sheets(folder: Path, scratch: Path) -> None:
    """A patch sheet and a similar-image query, through the commands."""
    _cli("explore", "patches", "lite0", "block6", "52", str(folder), "-o", str(scratch / "patches.png"), "-k", "12", "--tile", "112")
    _save(np.asarray(Image.open(scratch / "patches.png").convert("RGB"), np.float32) / 255, "explorer-patches.jpg")
    from skimage import data

    Image.fromarray(data.chelsea()).save(scratch / "query.png")
    print(_cli("explore", "similar", str(scratch / "query.png"), str(folder), "--layer", "block12", "--top", "5", "-o", str(scratch / "similar.png")))
    _save(np.asarray(Image.open(scratch / "similar.png").convert("RGB"), np.float32) / 255, "explorer-similar.jpg")


def atlas_screenshot(folder: Path, scratch: Path, steps: int) -> None:
    """A small atlas, photographed by headless Chromium (Debian's chromium package, driven by playwright)."""
    from playwright.sync_api import sync_playwright

    site = scratch / "atlas"
    _cli("atlas", "lite0", "-o", str(site), "--layers", "block3,block8", "--channels", "6", "--steps", str(min(steps, 128)),
         "--size", "112", "--images", str(folder), "--patches", "6")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.goto((site / "index.html").as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(ASSETS / "explorer-atlas.jpg"), type="jpeg", quality=85)
        browser.close()
    print(f"wrote {ASSETS / 'explorer-atlas.jpg'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="inversion steps")
    parser.add_argument("--only", default="maps,inversion,sheets,patchmaps,atlas", help="which pictures")
    args = parser.parse_args()
    from skimage import data

    photo = data.chelsea().astype(np.float32) / 255.0
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if "maps" in only:
            for model_name in LAYERS:
                progression(model_name, photo)
        if "inversion" in only:
            inversions(photo, args.steps)
        folder = photo_folder(scratch / "photos")
        if "sheets" in only:
            sheets(folder, scratch)
        if "patchmaps" in only:
            patch_maps(folder, scratch)
        if "atlas" in only:
            atlas_screenshot(folder, scratch, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
