"""Generate the DeepDream docs gallery: one photo dreamed at successive layers of each embedded model.

Usage::

    .venv/bin/python docs/make_deepdream_gallery.py [--width 224] [--steps N] [--only-defaults]

Writes ``docs/assets/deepdream-<model>-layers.jpg`` (a labelled sheet per
model: the photo dreamed at successive layers, every other setting at the
model's defaults, i.e. ``preset=auto``), ``docs/assets/deepdream-default.jpg``
(the default settings, Lite0) and ``docs/assets/deepdream-vgg16-hed.jpg`` (the
defaults with ``--model vgg16-hed``). Runs on the CPU in a few minutes;
everything is seeded, so reruns give the same images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from neurofilters.plugin_host import ModelCache, apply_filter, build_registry

ASSETS = Path(__file__).resolve().parent / "assets"
LAYERS = {
    "lite0": ["block2_expand_act", "block4_expand_act", "block6_expand_act", "block8_expand_act",
              "block10_expand_act", "block12_expand_act", "block14_expand_act"],
    "vgg16-hed": ["block2_conv2", "block3_conv1", "block3_conv3", "block4_conv1", "block4_conv2",
                  "block4_conv3", "block5_conv1"],
}


def photo(width: int) -> np.ndarray:
    """scikit-image's astronaut photo, ``width`` pixels wide."""
    from skimage import data

    picture = Image.fromarray(data.astronaut())
    return np.asarray(picture.resize((width, width), Image.BICUBIC), np.float32) / 255.0


def to_image(pixels: np.ndarray, label: str) -> Image.Image:
    picture = Image.fromarray((np.clip(pixels[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 7 * len(label) + 6, 14), fill=(0, 0, 0))
    draw.text((3, 2), label, fill=(255, 255, 255))
    return picture


def strip(images: list[Image.Image], columns: int = 4) -> Image.Image:
    width, height = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * width, rows * height), (255, 255, 255))
    for index, picture in enumerate(images):
        sheet.paste(picture, ((index % columns) * width, (index // columns) * height))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--steps", type=int, default=0, help="steps per octave (0 = the model's default)")
    parser.add_argument("--only-defaults", action="store_true", help="only the two pictures of the default settings")
    args = parser.parse_args()
    ASSETS.mkdir(exist_ok=True)
    spec = build_registry(autoload=False).get_filter("deepdream")
    models = ModelCache()
    image = photo(args.width)
    for model, layers in ({} if args.only_defaults else LAYERS).items():
        tiles = [to_image(image, "original")]
        for layer in layers:
            values = {"model": model, "layers": layer, **({"steps": args.steps} if args.steps else {})}
            tiles.append(to_image(apply_filter(spec, image, values, seed=0, models=models), layer))
            print(model, layer, flush=True)
        strip(tiles).save(ASSETS / f"deepdream-{model}-layers.jpg", quality=80, optimize=True)
    default = apply_filter(spec, photo(384), {}, seed=0, models=models)
    to_image(default, "deepdream defaults (lite0)").save(ASSETS / "deepdream-default.jpg", quality=85, optimize=True)
    vgg = apply_filter(spec, photo(384), {"model": "vgg16-hed"}, seed=0, models=models)
    to_image(vgg, "--model vgg16-hed (preset auto)").save(ASSETS / "deepdream-vgg16-hed.jpg", quality=85, optimize=True)


if __name__ == "__main__":
    main()
