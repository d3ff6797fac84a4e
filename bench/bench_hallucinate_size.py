"""Class hallucination at the size written: large canvases from noise, and the class put into photos.

Parts (``--parts``):

* ``noise``: ``hallucinate --start noise`` (its defaults, plus ``--set`` values) on ``--classes`` at
  each of ``--sizes``, generated on Lite0; Lite1 (never used for generating) judges the written
  image whole (through ``classify``: its own central 87.5 % crop, bicubic, to 240 px) and four
  seeded random crops of a quarter of the area each (half of each side); colour saturation,
  8x8 block contrast and sharpness (mean luminance gradient magnitude at full size,
  :mod:`neurofilters.filters.hallucinate.quality`); wall seconds; network evaluations (views of
  the network's input size, from the filter's progress messages).
* ``image``: ``hallucinate --start image`` on five photos (scikit-image's astronaut, chelsea,
  coffee, rocket and motorcycle) at each of ``--strengths``: Lite1's rank of the class before and
  after, SSIM to the photo (scikit-image, luminance-and-colour, data range 1).

Each run is stored in ``bench/results.json`` under ``hallucinate_size`` -> ``--label`` (``before``:
the filter as it was, ``after``: as it is), with the CPU, ``ONEDNN_MAX_CPU_ISA`` and the load
averages at start and end (the machine is shared: seconds are indicative, evaluations are not).
Run: ``.venv/bin/python bench/bench_hallucinate_size.py --label after --parts noise --sizes 512,1024``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from neurofilters.filters.hallucinate.quality import local_contrast, saturation, sharpness  # noqa: E402

CLASSES = (1, 130, 207, 291, 323, 417, 817, 949, 980, 985)
#: Classes for the photos: ones no photo here shows (rank > 100 on Lite1 before).
PHOTO_CLASSES = {"astronaut": 130, "chelsea": 130, "coffee": 985, "rocket": 323, "motorcycle": 1}


def lite1_rank(lite1: Any, image: np.ndarray, target: int) -> int:
    """Rank of ``target`` (1 = top) when Lite1 classifies ``image`` with its own preprocessing."""
    ranking = [entry[0] for entry in lite1.classify(image, top=1000)]
    return ranking.index(target) + 1


def crop_ranks(lite1: Any, image: np.ndarray, target: int, seed: int = 0, count: int = 4) -> list[int]:
    """Lite1's rank of ``target`` in ``count`` seeded random crops of a quarter of the area."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    ch, cw = height // 2, width // 2
    ranks = []
    for _ in range(count):
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        ranks.append(lite1_rank(lite1, image[top : top + ch, left : left + cw], target))
    return ranks


def _evaluations(messages: list[str]) -> int | None:
    found = [int(match.group(1)) for message in messages for match in [re.search(r"(\d+) network views", message)] if match]
    return found[-1] if found else None


def _save(folder: Path | None, name: str, pixels: np.ndarray) -> None:
    if folder is not None:
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)).save(folder / f"{name}.png")


def noise(classes: tuple[int, ...], sizes: tuple[int, ...], settings: dict[str, Any], folder: Path | None = None, label: str | None = None) -> dict:
    """``--start noise`` at each size: Lite1 whole and in crops, quality, seconds, evaluations."""
    import neurofilters

    lite1 = neurofilters.load_model("lite1")
    out: dict = {}
    for size in sizes:
        rows = []
        for target in classes:
            messages: list[str] = []
            began = time.perf_counter()
            image = neurofilters.apply(
                "hallucinate", np.zeros((size, size, 3), np.float32), seed=0, class_=target,
                progress=lambda fraction, message: messages.append(message), **settings,
            ).pixels
            seconds = time.perf_counter() - began
            _save(folder, f"noise-{target}-{size}", image)
            crops = crop_ranks(lite1, image, target)
            row = {"class": target, "label": lite1.labels[target], "rank_lite1": lite1_rank(lite1, image, target),
                   "crop_ranks_lite1": crops, "crops_top5": sum(rank <= 5 for rank in crops),
                   "saturation": saturation(image), "contrast": local_contrast(image), "sharpness": sharpness(image),
                   "seconds": seconds, "evaluations": _evaluations(messages), "load_average": os.getloadavg(),
                   "final_message": next((m for m in reversed(messages) if " sees" in m), "")}
            print(size, row, flush=True)
            rows.append(row)
        out[str(size)] = noise_summary(rows)
        print(size, {k: v for k, v in out[str(size)].items() if k != "rows"}, flush=True)
        if label is not None:
            store(label, {"noise": {str(size): out[str(size)]}, "load_average_end": os.getloadavg()})
    return out


def noise_summary(rows: list[dict]) -> dict:
    """The figures of one size: classes with the target in Lite1's top 5 whole and in most crops, medians."""
    return {
        "rows": rows,
        "whole_top5": sum(r["rank_lite1"] <= 5 for r in rows),
        # A class counts for the crops when most of its four crops (>= 3) have it in the top 5.
        "crops_top5_classes": sum(r["crops_top5"] >= 3 for r in rows),
        "crops_top5_of_all": sum(r["crops_top5"] for r in rows),
        "median_saturation": statistics.median(r["saturation"] for r in rows),
        "median_contrast": statistics.median(r["contrast"] for r in rows),
        "median_sharpness": statistics.median(r["sharpness"] for r in rows),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "classes": len(rows),
    }


def image_summary(rows: list[dict]) -> dict:
    """The figures of one strength: photos with the class in Lite1's top 5, SSIM."""
    return {"rows": rows, "rank_le5": sum(r["rank_after"] <= 5 for r in rows),
            "ssim_ge_0.4": sum(r["ssim"] >= 0.4 for r in rows),
            "median_ssim": statistics.median(r["ssim"] for r in rows), "photos": len(rows)}


def _photos() -> dict[str, np.ndarray]:
    from skimage import data, io

    photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    photos["motorcycle"] = io.imread(Path(data.__file__).parent / "motorcycle_left.png")
    return {name: pixels[:, :, :3].astype(np.float32) / 255.0 for name, pixels in photos.items()}


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """SSIM of two float RGB images in [0, 1] (scikit-image, over the colour channels)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(first, second, channel_axis=2, data_range=1.0))


def image(strengths: tuple[float, ...], settings: dict[str, Any], folder: Path | None = None, label: str | None = None) -> dict:
    """``--start image`` on five photos at each strength: Lite1's rank before/after and SSIM."""
    import neurofilters

    lite1 = neurofilters.load_model("lite1")
    out: dict = {}
    for strength in strengths:
        rows = []
        for name, photo in _photos().items():
            target = PHOTO_CLASSES[name]
            began = time.perf_counter()
            values = dict(settings)
            if strength >= 0:
                values["strength"] = strength
            result = neurofilters.apply("hallucinate", photo, seed=0, class_=target, start="image", **values).pixels
            _save(folder, f"image-{name}-{strength:g}", result)
            row = {"photo": name, "class": target, "rank_before": lite1_rank(lite1, photo, target),
                   "rank_after": lite1_rank(lite1, result, target), "ssim": ssim(photo, result),
                   "seconds": time.perf_counter() - began, "load_average": os.getloadavg(), "shape": list(photo.shape[:2])}
            print(strength, row, flush=True)
            rows.append(row)
        out[str(strength)] = image_summary(rows)
        print(strength, {k: v for k, v in out[str(strength)].items() if k != "rows"}, flush=True)
        if label is not None:
            store(label, {"image": {str(strength): out[str(strength)]}, "load_average_end": os.getloadavg()})
    return out


def store(label: str, results: dict) -> None:
    """Merge ``results`` into ``bench/results.json`` under ``hallucinate_size`` -> ``label`` (per part and size)."""
    section = machine.saved().get("hallucinate_size", {})
    mine = section.setdefault(label, {})
    for key, value in results.items():
        if key in ("noise", "image") and isinstance(mine.get(key), dict):
            # Runs on other classes (photos) at the same size (strength) add rows; a class run again replaces its row.
            ident, summarise = ("class", noise_summary) if key == "noise" else ("photo", image_summary)
            for inner, figures in value.items():
                rows = {row[ident]: row for row in mine[key].get(inner, {}).get("rows", [])}
                rows.update({row[ident]: row for row in figures["rows"]})
                mine[key][inner] = summarise(list(rows.values()))
        elif isinstance(value, dict) and isinstance(mine.get(key), dict):
            mine[key].update(value)
        else:
            mine[key] = value
    machine.save({"hallucinate_size": section})


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="where in results.json: before / after / anything")
    parser.add_argument("--parts", default="noise,image")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--strengths", default="0.3,1,3", help="start=image strengths (-1: the filter's default only)")
    parser.add_argument("--save", type=Path, help="also write each result as a PNG into this folder (docs/make_hallucinate_gallery.py --from)")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE filter parameter (repeatable)")
    args = parser.parse_args()
    settings = {name: _value(value) for name, value in (item.split("=", 1) for item in args.set)}
    results: dict = {"cpu": machine.cpu(), "cpu_count": os.cpu_count(),
                     "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""), "settings": settings,
                     "load_average_start": os.getloadavg()}
    store(args.label, results)
    parts = args.parts.split(",")
    if "noise" in parts:
        classes = tuple(int(value) for value in args.classes.split(","))
        results["noise"] = noise(classes, tuple(int(value) for value in args.sizes.split(",")), settings, args.save, args.label)
    if "image" in parts:
        results["image"] = image(tuple(float(value) for value in args.strengths.split(",")), settings, args.save, args.label)
    results["load_average_end"] = os.getloadavg()
    store(args.label, results)


if __name__ == "__main__":
    main()
