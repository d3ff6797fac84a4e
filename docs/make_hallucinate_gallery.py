"""Generate the gallery of docs/filters/hallucinate.md into docs/assets/ (web-size JPEGs).

- ``hallucinate-grid.jpg``: classes from noise on each embedded classifier (Lite0, Lite1), with
  the probability each network gives its own image and the other network's verdict;
- ``hallucinate-sizes.jpg``: five classes from noise at 224, 512 and 1024 px, and the 1024-px one's
  centre at 1:1, each with Lite1's rank of the class;
- ``hallucinate-photos.jpg``: five photos with a class put in at strengths 0.3, 1 and 3
  (``--start image``), with Lite1's rank and the SSIM to the photo;
- ``hallucinate-adversarial.jpg``: a photo before and after ``adversarial`` with both top-5 lists;
- ``hallucinate-noise.jpg``: a universal noise (``fit-noise``, its defaults, on bench_hallucinate's 42
  photos) and three photos it never saw while fitting, without and with it.

Run: ``.venv/bin/python docs/make_hallucinate_gallery.py [parts] [--from DIR]`` (parts: grid, sizes,
photos, adversarial, noise; tens of minutes on a CPU; ``--from`` reuses the PNGs that
``bench/bench_hallucinate_size.py --save DIR`` wrote with the same seed and defaults).
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
                "hallucinate", np.zeros((224, 224, 3), np.float32), seed=0, class_=target, model=name, steps=steps
            ).pixels
            p_self = {i: p for i, _, p in model.classify(image, top=1000)}[target]
            ranking = [i for i, _, _ in other.classify(image, top=1000)]
            top = row * (side + pad)
            canvas.paste(_tile(image, side), (column * side, top))
            _caption(canvas, (column * side + 4, top + side + 2),
                     [f"{model.labels[target][:22]} on {name}: p {p_self:.2f}", f"{other_name} rank {ranking.index(target) + 1}"])
            print(name, target, p_self, file=sys.stderr, flush=True)
    canvas.save(ASSETS / "hallucinate-grid.jpg", quality=88)


#: The photos of the photo sheet and the class put into each (bench/bench_hallucinate_size.py's).
PHOTO_CLASSES = {"astronaut": 130, "chelsea": 130, "coffee": 985, "rocket": 323, "motorcycle": 1}
STRENGTHS = (0.3, 1.0, 3.0)
SIZES = (224, 512, 1024)


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))


def _cached(source: Path | None, name: str, make) -> np.ndarray:
    """The PNG ``name`` written by ``bench_hallucinate_size.py --save source`` (same seed and defaults), or ``make()``."""
    path = None if source is None else source / f"{name}.png"
    if path is not None and path.is_file():
        return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    image = make()
    if source is not None:
        source.mkdir(parents=True, exist_ok=True)
        _pil(image).save(path)
    return image


def _rank(model, image: np.ndarray, target: int) -> int:
    return [index for index, _, _ in model.classify(image, top=1000)].index(target) + 1


def sizes(source: Path | None) -> None:
    """``hallucinate-sizes.jpg``: classes from noise at 224, 512 and 1024 px (each shown whole), and 224 px of the 1024 one at 1:1."""
    import neurofilters

    lite1 = neurofilters.load_model("lite1")
    side, pad = 200, 30
    canvas = Image.new("RGB", ((len(SIZES) + 1) * side, len(CLASSES) * (side + pad)), "white")
    for row, target in enumerate(CLASSES):
        top = row * (side + pad)
        for column, size in enumerate(SIZES):
            image = _cached(source, f"noise-{target}-{size}", lambda: neurofilters.apply(
                "hallucinate", np.zeros((size, size, 3), np.float32), seed=0, class_=target).pixels)
            canvas.paste(_pil(image).resize((side, side), Image.LANCZOS), (column * side, top))
            _caption(canvas, (column * side + 4, top + side + 2), [f"{lite1.labels[target][:16]} {size} px: Lite1 rank {_rank(lite1, image, target)}"])
            if size == SIZES[-1]:
                middle = size // 2
                detail = image[middle - side // 2 : middle + side // 2, middle - side // 2 : middle + side // 2]
                canvas.paste(_pil(detail), (len(SIZES) * side, top))
                _caption(canvas, (len(SIZES) * side + 4, top + side + 2), [f"{size} px, centre at 1:1"])
        print("sizes", target, file=sys.stderr, flush=True)
    canvas.save(ASSETS / "hallucinate-sizes.jpg", quality=85)


def photos(source: Path | None) -> None:
    """``hallucinate-photos.jpg``: five photos, each with a class put in at three strengths (``--start image``)."""
    import neurofilters
    from skimage import data, io
    from skimage.metrics import structural_similarity

    lite1 = neurofilters.load_model("lite1")
    height, pad = 150, 30
    loaded = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    loaded["motorcycle"] = io.imread(Path(data.__file__).parent / "motorcycle_left.png")
    rows = []
    for name, pixels in loaded.items():
        photo = pixels[:, :, :3].astype(np.float32) / 255.0
        target = PHOTO_CLASSES[name]
        panels = [(photo, f"{name}: {lite1.labels[target]} rank {_rank(lite1, photo, target)}")]
        for strength in STRENGTHS:
            result = _cached(source, f"image-{name}-{strength:g}", lambda: neurofilters.apply(
                "hallucinate", photo, seed=0, class_=target, start="image", strength=strength).pixels)
            similarity = structural_similarity(photo, result, channel_axis=2, data_range=1.0)
            panels.append((result, f"strength {strength:g}: rank {_rank(lite1, result, target)}, SSIM {similarity:.2f}"))
        rows.append(panels)
        print("photos", name, file=sys.stderr, flush=True)
    width = max(sum(round(panel.shape[1] * height / panel.shape[0]) for panel, _ in panels) for panels in rows)
    canvas = Image.new("RGB", (width, len(rows) * (height + pad)), "white")
    for row, panels in enumerate(rows):
        left = 0
        for panel, title in panels:
            tile_width = round(panel.shape[1] * height / panel.shape[0])
            canvas.paste(_pil(panel).resize((tile_width, height), Image.LANCZOS), (left, row * (height + pad)))
            _caption(canvas, (left + 4, row * (height + pad) + height + 2), [title])
            left += tile_width
    canvas.save(ASSETS / "hallucinate-photos.jpg", quality=85)


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
    import neurofilters
    from neurofilters.filters.hallucinate import fit_noise
    from neurofilters.filters.hallucinate.plugin import FIT_NOISE_PARAMS

    FIT_NOISE_DEFAULTS = {param.name: param.default for param in FIT_NOISE_PARAMS}
    from neurofilters.filters.hallucinate.noise import decode_noise_image
    from neurofilters.plugin_host import load_image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_hallucinate import photo_folder

    lite0 = neurofilters.load_model("lite0")
    with tempfile.TemporaryDirectory() as temporary:
        folder = photo_folder(Path(temporary) / "photos")
        output = Path(temporary) / "noise.npz"
        neurofilters.fit_noise(folder, class_="flamingo", output=output)  # the command's defaults
        png = output.with_suffix(".png")
        loaded = load_image(png).pixels
        visible = np.clip(0.5 + decode_noise_image(loaded) * (0.5 / (10 / 255)), 0, 1)
        # Three of the photos the command held out (its own split of the folder's photos).
        _, held_out = fit_noise.split(sorted(folder.glob("*.png")), FIT_NOISE_DEFAULTS["held_out"], FIT_NOISE_DEFAULTS["seed"])
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
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["grid", "sizes", "photos", "adversarial", "noise"])
    parser.add_argument("--from", dest="source", type=Path,
                        help="folder of PNGs from bench/bench_hallucinate_size.py --save (rendered and added there when missing)")
    args = parser.parse_args()
    parts = args.parts
    if "grid" in parts:
        grid(128)
    if "sizes" in parts:
        sizes(args.source)
    if "photos" in parts:
        photos(args.source)
    if "adversarial" in parts:
        adversarial()
    if "noise" in parts:
        noise()


if __name__ == "__main__":
    main()
