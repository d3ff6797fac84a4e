"""Generate the texture docs gallery: samples and syntheses, a tileable texture tiled 2 x 2, style transfer.

Usage::

    .venv/bin/python docs/make_texture_gallery.py [--size 192] [--steps 100] [--patterns DIR]

Writes into ``docs/assets/``: ``texture-synthesis.jpg`` (each sample beside a texture synthesised
from it, at the filter's defaults), ``texture-tileable.jpg`` (a ``--tileable`` texture repeated
2 x 2: no seams) and ``texture-style.jpg`` (content, style, the transfer, the transfer with
``--keep-colours``). Samples: scikit-image's brick and gravel, and with ``--patterns`` (a
folder of GIMP ``.pat`` files, e.g. Debian's gimp-data) one of GIMP's own patterns, read by the same
loader as ``--source``. Seeded: reruns give the same images. Takes several minutes on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import neurofilters
from neurofilters.plugin_host.imageio.files import load_image

ASSETS = Path(__file__).resolve().parent / "assets"


def _grey_rgb(name: str, size: int) -> np.ndarray:
    """A scikit-image grey texture, the whole picture scaled to ``size`` (more repeats of its elements)."""
    import skimage.data

    from neurofilters.filters.octaves import resize_image

    grey = np.asarray(getattr(skimage.data, name)(), np.float32) / 255.0
    return np.clip(resize_image(np.repeat(grey[:, :, None], 3, axis=2), (size, size)), 0.0, 1.0)


def _u8(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def _sheet(rows: list[list[tuple[np.ndarray, str]]], cell: int) -> Image.Image:
    """A labelled grid; each image is shown at ``cell`` pixels high."""
    pictures = [[(_u8(img).resize((round(img.shape[1] * cell / img.shape[0]), cell), Image.LANCZOS), label) for img, label in row] for row in rows]
    width = max(sum(p.width for p, _ in row) + 8 * (len(row) + 1) for row in pictures)
    height = len(pictures) * (cell + 26) + 8
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 8
    for row in pictures:
        x = 8
        for picture, label in row:
            sheet.paste(picture, (x, y))
            draw.text((x, y + cell + 4), label, fill="black")
            x += picture.width + 8
        y += cell + 26
    return sheet


def main() -> None:
    """Make the three sheets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--patterns", type=Path, default=None)
    parser.add_argument("--only", choices=("synthesis", "tileable", "style"), default=None)
    args = parser.parse_args()
    size = args.size
    canvas = np.zeros((size, size, 3), np.float32)
    samples = [(_grey_rgb(name, 256), f"scikit-image {name}") for name in ("brick", "gravel")]
    if args.patterns is not None:
        for name in ("Food/java.pat",):
            path = args.patterns / name
            if path.is_file():
                samples.append((load_image(path).pixels[:, :, :3], f"GIMP {path.stem}.pat"))
    if args.only in (None, "synthesis"):
        rows = []
        for sample, label in samples:
            made = neurofilters.apply("texture", canvas, seed=1, source=sample, steps=args.steps).pixels
            rows.append([(sample, label), (made, f"texture, {size} px")])
            print("synthesised", label, flush=True)
        _sheet(rows, 192).save(ASSETS / "texture-synthesis.jpg", quality=88)
    if args.only in (None, "tileable"):
        sample = samples[0][0]
        tile = neurofilters.apply("texture", canvas, seed=2, source=sample, steps=args.steps, tileable=True).pixels
        _sheet([[(np.tile(tile, (2, 2, 1)), f"--tileable, {size} px tile repeated 2 x 2")]], 2 * 192).save(ASSETS / "texture-tileable.jpg", quality=88)
        from neurofilters.plugin_host.imageio.files import save_image

        save_image(ASSETS / "texture-tileable.pat", tile)  # the same tile as a GIMP pattern
        print("tileable done", flush=True)
    if args.only in (None, "style"):
        import skimage.data

        from neurofilters.filters.octaves import resize_image

        content = resize_image(np.asarray(skimage.data.chelsea(), np.float32) / 255.0, (size, round(size * 451 / 300)))
        style = np.asarray(skimage.data.immunohistochemistry(), np.float32)[:256, :256] / 255.0
        plain = neurofilters.apply("style-transfer", content, seed=1, style=style, steps=args.steps).pixels
        kept = neurofilters.apply("style-transfer", content, seed=1, style=style, steps=args.steps, keep_colours=True).pixels
        _sheet([[(content, "content"), (style, "style"), (plain, "style-transfer"), (kept, "--keep-colours")]], 192).save(ASSETS / "texture-style.jpg", quality=88)
        print("style done", flush=True)


if __name__ == "__main__":
    main()
