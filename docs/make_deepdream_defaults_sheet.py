"""Contact sheets that chose DeepDream's defaults: old vs new settings, several photos and sizes.

Usage::

    .venv/bin/python docs/make_deepdream_defaults_sheet.py [--models lite0,vgg16-hed]
        [--sizes 300,1000,3000] [--photos astronaut,chelsea,coffee,rocket] [--large-photos coffee]
        [--large-from 2000] [--cache /tmp/dream-sheet]

For each model it writes ``docs/assets/deepdream-defaults-<model>.jpg``: one row
per photo and size (scikit-image's photos, scaled so the longer side is the
size), columns the photo, the previous defaults and the current defaults
(``preset=auto``), each with its time on this machine. Pictures larger than the
cell are shown whole (scaled down) and as a 1:1 crop of their centre, so the
patterns' size in pixels can be judged too. Sizes from ``--large-from`` px up
use only ``--large-photos`` (they take minutes each on a 2-core CPU). Seeded:
reruns give the same pictures. The committed sheets were made with the
defaults for Lite0 and ``--models vgg16-hed --sizes 300,1000 --large-from 1000
--large-photos astronaut,coffee`` for VGG16 (a 3000 px VGG16 dream takes
several minutes here).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from neurofilters.plugin_host import ModelCache, apply_filter, build_registry

ASSETS = Path(__file__).resolve().parent / "assets"
#: Cell side in the sheet (pixels).
CELL = 220
#: The defaults before this sheet was made, spelled out (preset "none": nothing else applies).
OLD = {
    "lite0": {"preset": "none", "model": "lite0", "octaves": 4, "steps": 10, "chroma": 1.0},
    "vgg16-hed": {
        "preset": "none", "model": "vgg16-hed", "octaves": 4, "steps": 10, "step_size": 1.5 / 255.0,
        "normalize": "mean-abs", "smoothing": "none", "chroma": 0.15,
    },
}  # fmt: skip


def photo(name: str, side: int) -> np.ndarray:
    """scikit-image's photo ``name`` scaled so its longer side is ``side``, float32 RGB in [0, 1]."""
    from skimage import data

    picture = Image.fromarray(getattr(data, name)()).convert("RGB")
    factor = side / max(picture.size)
    size = (max(1, round(picture.size[0] * factor)), max(1, round(picture.size[1] * factor)))
    return np.asarray(picture.resize(size, Image.BICUBIC), np.float32) / 255.0


def labelled(picture: Image.Image, label: str) -> Image.Image:
    """``picture`` with ``label`` on a black box in its top-left corner."""
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 6 * len(label) + 6, 13), fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return picture


def cells(pixels: np.ndarray, label: str) -> list[Image.Image]:
    """The picture fitted into a cell, plus a 1:1 centre crop when it is over twice the cell."""
    picture = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))
    width, height = picture.size
    factor = min(1.0, CELL / max(width, height))
    whole = picture.resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.LANCZOS)
    out = [labelled(whole, label)]
    if max(width, height) >= 2 * CELL:
        left, top = max(0, (width - CELL) // 2), max(0, (height - CELL) // 2)
        crop = picture.crop((left, top, min(width, left + CELL), min(height, top + CELL)))
        out.append(labelled(crop, "1:1 centre"))
    return out


def dreamed(spec: object, image: np.ndarray, values: dict, seed: int, models: ModelCache, cache: Path | None, key: str) -> tuple[np.ndarray, float]:
    """The dream of ``image`` and its duration, from ``cache`` when it holds them (re-layout for free)."""
    if cache is not None and (cache / f"{key}.png").exists():
        seconds = float((cache / f"{key}.txt").read_text())
        return np.asarray(Image.open(cache / f"{key}.png"), np.float32) / 255.0, seconds
    start = time.perf_counter()
    out = apply_filter(spec, image, values, seed=seed, models=models)
    seconds = time.perf_counter() - start
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)).save(cache / f"{key}.png")
        (cache / f"{key}.txt").write_text(f"{seconds:.2f}\n")
    return out, seconds


def sheet(rows: list[list[Image.Image]]) -> Image.Image:
    """Rows of cells on a white background: ``CELL`` wide columns, each row as tall as its tallest cell."""
    columns = max(len(row) for row in rows)
    heights = [max(cell.size[1] for cell in row) for row in rows]
    result = Image.new("RGB", (columns * (CELL + 4), sum(h + 4 for h in heights)), (255, 255, 255))
    top = 0
    for row, height in zip(rows, heights):
        for c, cell in enumerate(row):
            result.paste(cell, (c * (CELL + 4), top))
        top += height + 4
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lite0,vgg16-hed")
    parser.add_argument("--sizes", default="300,1000,3000")
    parser.add_argument("--photos", default="astronaut,chelsea,coffee,rocket")
    parser.add_argument("--large-photos", default="coffee", help="photos for sizes of --large-from px and more")
    parser.add_argument("--large-from", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder keeping each dream (PNG) and its time, so a rerun only lays out the sheet")
    args = parser.parse_args()
    spec = build_registry(autoload=False).get_filter("deepdream")
    models = ModelCache()
    ASSETS.mkdir(exist_ok=True)
    for model in filter(None, args.models.split(",")):
        # Load and trace first, so each dream's time is its own (as in a batch or the GIMP worker).
        apply_filter(spec, photo("chelsea", 64), {"model": model, "steps": 1}, seed=0, models=models)
        rows = []
        for side in (int(s) for s in args.sizes.split(",")):
            names = args.large_photos if side >= args.large_from else args.photos
            for name in filter(None, names.split(",")):
                image = photo(name, side)
                row = cells(image, f"{name} {image.shape[1]}x{image.shape[0]}")
                for label, values in (("old", OLD[model]), ("new", {"model": model})):
                    key = f"{model}-{name}-{side}-{label}-{args.seed}"
                    out, seconds = dreamed(spec, image, values, args.seed, models, args.cache, key)
                    print(f"{model} {name} {side} {label}: {seconds:.1f} s", flush=True)
                    row += cells(out, f"{label} defaults, {seconds:.0f} s")
                rows.append(row)
        target = ASSETS / f"deepdream-defaults-{model}.jpg"
        sheet(rows).save(target, quality=72, optimize=True)
        print("wrote", target, flush=True)


if __name__ == "__main__":
    main()
