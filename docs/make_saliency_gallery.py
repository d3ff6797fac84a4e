"""Generate the saliency docs figures: every method side by side for each embedded model, and the sanity check.

Usage::

    .venv/bin/python docs/make_saliency_gallery.py [--width 320] [--levels 8]

Writes into ``docs/assets/``:

* ``saliency-lite0.jpg``: scikit-image's cat photo, then every method's map for
  Lite0's top class, as grey maps (top row) and heat maps over the photo (bottom row);
* ``saliency-vgg16-hed.jpg``: the same for the VGG16-HED backbone, which has no
  classes: the maps explain its most active channel of ``block4_conv3``;
* ``saliency-sanity.jpg``: ``neurofilters saliency-check lite0`` as a figure:
  each method's map as Lite0's weights are randomised from the logits down;
* ``saliency-default.jpg``: the filter's defaults (Grad-CAM heat map) on the photo.

Runs on the CPU in a few minutes; everything is seeded, so reruns give the same images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from neurofilters.plugin_host import ModelCache, apply_filter, build_registry

ASSETS = Path(__file__).resolve().parent / "assets"
METHODS = ("guided-backprop", "gradient", "smoothgrad", "integrated-gradients", "grad-cam", "grad-cam++", "guided-grad-cam")


def photo(width: int) -> np.ndarray:
    """scikit-image's cat photo (``chelsea``), ``width`` pixels wide."""
    from skimage import data

    picture = Image.fromarray(data.chelsea())
    height = round(picture.height * width / picture.width)
    return np.asarray(picture.resize((width, height), Image.BICUBIC), np.float32) / 255.0


def to_image(pixels: np.ndarray, label: str) -> Image.Image:
    """Pixels as a Pillow image with a label in its corner."""
    picture = Image.fromarray((np.clip(pixels[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 6 * len(label) + 8, 14), fill=(0, 0, 0))
    draw.text((3, 2), label, fill=(255, 255, 255))
    return picture


def sheet(rows: list[list[Image.Image]], gap: int = 3) -> Image.Image:
    """Images in rows on a white background."""
    width, height = rows[0][0].size
    columns = max(len(row) for row in rows)
    canvas = Image.new("RGB", (columns * (width + gap) - gap, len(rows) * (height + gap) - gap), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            canvas.paste(picture, (c * (width + gap), r * (height + gap)))
    return canvas


def busiest_channel(models: ModelCache, image: np.ndarray, layer: str) -> int:
    """The channel of ``layer`` with the largest mean activation on ``image`` (VGG16-HED's target)."""
    features = models.get("vgg16-hed").feature_model([layer])
    values = np.asarray(features(image[None])[0])
    return int(values.mean(axis=(0, 1, 2)).argmax())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--levels", type=int, default=8, help="layer groups randomised in the sanity figure")
    parser.add_argument("--parts", default="methods,sanity", help="what to render: methods, sanity or both (default)")
    args = parser.parse_args()
    ASSETS.mkdir(exist_ok=True)
    spec = build_registry(autoload=False).get_filter("saliency")
    models = ModelCache()
    image = photo(args.width)
    if "methods" in args.parts:
        render_methods(spec, models, image)
    if "sanity" in args.parts:
        render_sanity(models, image, args.levels)


def render_methods(spec, models: ModelCache, image: np.ndarray) -> None:
    """Every method side by side for each embedded model, and the defaults."""
    channel = busiest_channel(models, image, "block4_conv3")
    settings = {
        "lite0": ({"model": "lite0"}, "lite0, top class"),
        "vgg16-hed": (
            {"model": "vgg16-hed", "target": "channel", "target_layer": "block4_conv3", "channel": channel,
             "layer": "block4_conv3"},
            f"vgg16-hed, block4_conv3 channel {channel}",
        ),
    }
    for model, (values, title) in settings.items():
        grey_row = [to_image(image, title)]
        heat_row = [to_image(image, "heat maps below")]
        for method in METHODS:
            for output, row in (("grey", grey_row), ("heatmap", heat_row)):
                pixels = apply_filter(spec, image, {**values, "method": method, "display": output}, seed=0, models=models)
                row.append(to_image(pixels, method))
            print(model, method, flush=True)
        half = (len(METHODS) + 1) // 2  # two lines of four per output: web-size width
        rows = [grey_row[:half], grey_row[half:], heat_row[:half], heat_row[half:]]
        sheet(rows).save(ASSETS / f"saliency-{model}.jpg", quality=82, optimize=True)
    default = apply_filter(spec, photo(480), {}, seed=0, models=models)
    to_image(default, "saliency defaults: grad-cam heat map, lite0 top class").save(
        ASSETS / "saliency-default.jpg", quality=85, optimize=True
    )


def render_sanity(models: ModelCache, image: np.ndarray, levels: int) -> None:
    """The cascading-randomisation figure of Lite0."""
    from neurofilters.filters.saliency.engine import resolve_target_class, network_size, resize_rgb
    from neurofilters.filters.saliency.sanity import cascading_randomisation, sanity_figure

    lite0 = models.get("lite0")
    seen = resize_rgb(image, network_size(lite0, *image.shape[:2]))
    report = cascading_randomisation(lite0, seen, resolve_target_class(lite0, "top-1", image), methods=METHODS,
                                     levels=levels, samples=16, steps=16)
    for method, values in report.correlations.items():
        print(f"{method:22s}", " ".join(f"{value:+.2f}" for value in values))
    figure = (sanity_figure(report, cell=96) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(figure).save(ASSETS / "saliency-sanity.jpg", quality=85, optimize=True)


if __name__ == "__main__":
    main()
