"""Generate the gallery of docs/filters/hallucinate.md into docs/assets/ (web-size JPEGs).

- ``hallucinate-grid.jpg``: classes from noise on each embedded classifier (Lite0, Lite1), with
  the probability each network gives its own image and the other network's verdict;
- ``hallucinate-dreams.jpg``: one photo with three classes dreamed into it (``--start image``);
- ``hallucinate-adversarial.jpg``: a photo before and after ``adversarial`` with both top-5 lists;
- ``hallucinate-noise.jpg``: a universal noise (``fit-noise``, its defaults, on bench_hallucinate's 42
  photos) and three photos it never saw while fitting, without and with it.

Run: ``PYTHONPATH=... python docs/make_hallucinate_gallery.py`` (several minutes on a CPU).
"""

from __future__ import annotations

import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ASSETS = Path(__file__).resolve().parent / "assets"
CLASSES = (1, 130, 323, 980, 985)


def _tile(image: np.ndarray, side: int) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).resize((side, side), Image.LANCZOS)


def _caption(canvas: Image.Image, xy: tuple[int, int], lines: list[str]) -> None:
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(lines):
        draw.text((xy[0], xy[1] + 12 * index), line, fill=(20, 20, 20))


def grid(steps: int) -> None:
    import neurofilters

    models = {name: neurofilters.load_model(name) for name in ("lite0", "lite1")}
    side, pad = 200, 40
    canvas = Image.new("RGB", (len(CLASSES) * side, len(models) * (side + pad)), "white")
    for row, (name, model) in enumerate(models.items()):
        other_name = "lite1" if name == "lite0" else "lite0"
        other = models[other_name]
        for column, target in enumerate(CLASSES):
            image = neurofilters.apply(
                "hallucinate", np.zeros((224, 224, 3), np.float32), seed=0, target=target, model=name, steps=steps
            ).pixels
            p_self = {i: p for i, _, p in model.classify(image, top=1000)}[target]
            ranking = [i for i, _, _ in other.classify(image, top=1000)]
            top = row * (side + pad)
            canvas.paste(_tile(image, side), (column * side, top))
            _caption(canvas, (column * side + 4, top + side + 2),
                     [f"{model.labels[target][:22]} on {name}: p {p_self:.2f}", f"{other_name} rank {ranking.index(target) + 1}"])
            print(name, target, p_self, file=sys.stderr, flush=True)
    canvas.save(ASSETS / "hallucinate-grid.jpg", quality=88)


def dreams(steps: int) -> None:
    import neurofilters
    from skimage import data

    photo = data.chelsea().astype(np.float32) / 255.0
    panels = [photo] + [
        neurofilters.apply("hallucinate", photo, seed=0, start="image", class_=target, dream_steps=steps, octaves=3).pixels
        for target in ("flamingo", "daisy", "goldfish")
    ]
    width = 300
    height = round(photo.shape[0] * width / photo.shape[1])
    canvas = Image.new("RGB", (4 * width, height + 16), "white")
    for index, (panel, title) in enumerate(zip(panels, ("photo", "+ flamingo", "+ daisy", "+ goldfish"))):
        canvas.paste(Image.fromarray((panel * 255).round().astype(np.uint8)).resize((width, height), Image.LANCZOS), (index * width, 0))
        _caption(canvas, (index * width + 4, height + 2), [title])
    canvas.save(ASSETS / "hallucinate-dreams.jpg", quality=88)


def adversarial() -> None:
    import neurofilters
    from skimage import data

    lite0 = neurofilters.load_model("lite0")
    photo = data.coffee().astype(np.float32) / 255.0
    result = neurofilters.apply("adversarial", photo, target="flamingo", epsilon=8).pixels
    width = 360
    height = round(photo.shape[0] * width / photo.shape[1])
    canvas = Image.new("RGB", (2 * width, height + 80), "white")
    for index, (image, title) in enumerate(((photo, "photo"), (result, "adversarial, eps 8/255"))):
        canvas.paste(Image.fromarray((image * 255).round().astype(np.uint8)).resize((width, height), Image.LANCZOS), (index * width, 0))
        lines = [title] + [f"{p:6.1%} {name}" for _, name, p in lite0.classify(image, top=5)]
        _caption(canvas, (index * width + 4, height + 4), lines)
    canvas.save(ASSETS / "hallucinate-adversarial.jpg", quality=92)


def noise() -> None:
    import argparse

    import neurofilters
    from neurofilters.filters.hallucinate import fit_noise
    from neurofilters.filters.hallucinate.noise import decode_noise_image
    from neurofilters.plugin_host import load_image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_hallucinate import photo_folder

    lite0 = neurofilters.load_model("lite0")
    with tempfile.TemporaryDirectory() as temporary:
        folder = photo_folder(Path(temporary) / "photos")
        output = Path(temporary) / "noise.npz"
        parser = argparse.ArgumentParser()
        fit_noise.configure(parser)
        args = parser.parse_args([str(folder), "--class", "flamingo", "-o", str(output)])  # the command's defaults
        fit_noise.run(args)
        png = output.with_suffix(".png")
        loaded = load_image(png).pixels
        visible = np.clip(0.5 + decode_noise_image(loaded) * (0.5 / (10 / 255)), 0, 1)
        # Three of the photos the command held out (its own split of the folder's photos).
        _, held_out = fit_noise.split(sorted(folder.glob("*.png")), args.held_out, args.seed)
        chosen = [path for path in held_out if "skimage" not in path.name][:2] + [path for path in held_out if "skimage" in path.name][:1]
        side = 220
        canvas = Image.new("RGB", (4 * side, 2 * side + 34), "white")
        canvas.paste(_tile(visible, side), (0, side // 2))
        _caption(canvas, (4, side // 2 + side + 2), ["noise (x12.75), |r| <= 10/255"])
        for index, path in enumerate(chosen, start=1):
            photo = load_image(path).pixels[:, :, :3]
            result = neurofilters.apply("add-noise", photo, noise=str(png)).pixels
            before, after = lite0.classify(photo, top=1)[0], lite0.classify(result, top=1)[0]
            canvas.paste(_tile(photo, side), (index * side, 0))
            canvas.paste(_tile(result, side), (index * side, side))
            _caption(canvas, (index * side + 4, 2 * side + 2), [f"{before[1]} {before[2]:.2f}", f"-> {after[1]} {after[2]:.2f}"])
    canvas.save(ASSETS / "hallucinate-noise.jpg", quality=90)


def main() -> None:
    parts = sys.argv[1:] or ["grid", "dreams", "adversarial", "noise"]
    if "grid" in parts:
        grid(128)
    if "dreams" in parts:
        dreams(10)
    if "adversarial" in parts:
        adversarial()
    if "noise" in parts:
        noise()


if __name__ == "__main__":
    main()
