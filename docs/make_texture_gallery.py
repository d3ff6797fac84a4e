"""Generate the texture docs gallery: samples and syntheses, a tileable texture tiled 2 x 2, style transfer.

Usage::

    .venv/bin/python docs/make_texture_gallery.py [--size 192] [--steps N] [--patterns DIR]
    .venv/bin/python docs/make_texture_gallery.py --only before-after --size 128 --patterns DIR

Writes into ``docs/assets/``: ``texture-synthesis.jpg`` (each sample beside a texture synthesised
from it, at the filter's defaults), ``texture-tileable.jpg`` (a ``--tileable`` texture repeated
2 x 2: no seams) and ``texture-style.jpg`` (content, style, the transfer, the transfer with
``--keep-colours``). Samples: scikit-image's brick and gravel, and with ``--patterns`` (a
folder of GIMP ``.pat`` files, e.g. Debian's gimp-data) one of GIMP's own patterns, read by the same
loader as ``--source``. Seeded: reruns give the same images. Takes several minutes on a CPU.

``--only before-after`` writes ``texture-before-after.jpg``: for GIMP's leopard (with ``--patterns``) and
scikit-image's brick, the texture made with the defaults before issue 21 (100 L-BFGS iterations in every
octave, the network's zero padding, all five layers in every octave) beside today's defaults, same seed
and size, and a style transfer likewise; each labelled with its seconds and network evaluations.

``--only more-steps`` writes ``texture-more-steps.jpg``: the same samples with ``--steps 64`` (more than the
32 up to which the finest octave matches only the shallow layers), made as before that rule (the finest
octave on the three shallow layers) beside today's (every layer), same seed and size, with their seconds.
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
    parser.add_argument("--steps", type=int, default=None, help="the filters' --steps (default: theirs)")
    parser.add_argument("--patterns", type=Path, default=None)
    parser.add_argument("--only", choices=("synthesis", "tileable", "style", "before-after", "more-steps"), default=None)
    args = parser.parse_args()
    if args.only == "before-after":
        before_after(args.size, args.patterns)
        return
    if args.only == "more-steps":
        more_steps(args.size, args.patterns, args.steps or 64)
        return
    steps = {} if args.steps is None else {"steps": args.steps}
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
            made = neurofilters.apply("texture", canvas, seed=1, source=sample, **steps).pixels
            rows.append([(sample, label), (made, f"texture, {size} px")])
            print("synthesised", label, flush=True)
        _sheet(rows, 192).save(ASSETS / "texture-synthesis.jpg", quality=88)
    if args.only in (None, "tileable"):
        sample = samples[0][0]
        tile = neurofilters.apply("texture", canvas, seed=2, source=sample, **steps, tileable=True).pixels
        _sheet([[(np.tile(tile, (2, 2, 1)), f"--tileable, {size} px tile repeated 2 x 2")]], 2 * 192).save(ASSETS / "texture-tileable.jpg", quality=88)
        from neurofilters.plugin_host.imageio.files import save_image

        save_image(ASSETS / "texture-tileable.pat", tile)  # the same tile as a GIMP pattern
        print("tileable done", flush=True)
    if args.only in (None, "style"):
        import skimage.data

        from neurofilters.filters.octaves import resize_image

        content = resize_image(np.asarray(skimage.data.chelsea(), np.float32) / 255.0, (size, round(size * 451 / 300)))
        style = np.asarray(skimage.data.immunohistochemistry(), np.float32)[:256, :256] / 255.0
        plain = neurofilters.apply("style-transfer", content, seed=1, style=style, **steps).pixels
        kept = neurofilters.apply("style-transfer", content, seed=1, style=style, **steps, keep_colours=True).pixels
        _sheet([[(content, "content"), (style, "style"), (plain, "style-transfer"), (kept, "--keep-colours")]], 192).save(ASSETS / "texture-style.jpg", quality=88)
        print("style done", flush=True)


def before_after(size: int, patterns: Path | None) -> None:
    """The defaults before issue 21 beside today's, same seeds: textures (leopard, brick) and a style transfer."""
    import time

    import skimage.data

    from neurofilters.filters.octaves import resize_image
    from neurofilters.filters.texture import style as style_module
    from neurofilters.filters.texture import synthesis
    from neurofilters.plugin_host import FilterContext

    layers = ["block1_conv1", "block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    rows = []
    for sample, label in _leopard_and_brick(patterns):
        engine = synthesis.build_engine(FilterContext(seed=1), {"model": "vgg16-hed", "precision": "auto", "tile_size": 512}, layers, None)
        engine.fuse_single_window = False  # the two passes of before
        began = time.perf_counter()
        old, _ = synthesis.synthesise(engine, sample, (size, size), steps=100, octaves=0, wrap=False, rng=FilterContext(seed=1).rng(1))
        old = synthesis.match_colours(old, sample)
        old_label = f"before: {time.perf_counter() - began:.0f} s, {engine.evaluations} evaluations"
        began = time.perf_counter()
        new = neurofilters.apply("texture", np.zeros((size, size, 3), np.float32), seed=1, source=sample).pixels
        rows.append([(sample, label), (old, old_label), (new, f"now: {time.perf_counter() - began:.0f} s (defaults)")])
        print("before/after", label, flush=True)
    content = resize_image(np.asarray(skimage.data.chelsea(), np.float32) / 255.0, (size, round(size * 451 / 300)))
    style = np.asarray(skimage.data.immunohistochemistry(), np.float32)[:256, :256] / 255.0
    engine = synthesis.build_engine(FilterContext(seed=1), {"model": "vgg16-hed", "precision": "auto", "tile_size": 512},
                                    ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1"], "block4_conv2")
    engine.fuse_single_window = False
    began = time.perf_counter()
    old, _ = style_module.transfer(engine, content, [(style, 1.0)], steps=100, octaves=0, content_weight=1.0, style_weights=[0.25] * 4,
                                   tv_weight=0.0, start="content", rng=FilterContext(seed=1).rng(1))
    old_label = f"before: {time.perf_counter() - began:.0f} s, {engine.evaluations} evaluations"
    began = time.perf_counter()
    new = neurofilters.apply("style-transfer", content, seed=1, style=style).pixels
    rows.append([(style, "style"), (old, old_label), (new, f"now: {time.perf_counter() - began:.0f} s (defaults)")])
    _sheet(rows, size).save(ASSETS / "texture-before-after.jpg", quality=85)


def _leopard_and_brick(patterns: Path | None) -> list[tuple[np.ndarray, str]]:
    """scikit-image's brick, and GIMP's leopard first when ``patterns`` holds it."""
    from neurofilters.filters.texture import synthesis

    samples = [(_grey_rgb("brick", 128), "brick")]
    if patterns is not None and (patterns / "Animal" / "leopard.pat").is_file():
        samples.insert(0, (synthesis.rgb_of(load_image(patterns / "Animal" / "leopard.pat").pixels), "GIMP leopard"))
    return samples


def more_steps(size: int, patterns: Path | None, steps: int) -> None:
    """``--steps`` above the shallow finest octave's limit: the finest octave on the shallow layers (before) and on every layer (now)."""
    import time

    from neurofilters.filters.texture import synthesis
    from neurofilters.filters.texture.plugin import DEFAULT_TEXTURE_LAYERS
    from neurofilters.plugin_host import FilterContext

    layers = [name.split(":")[0] for name in DEFAULT_TEXTURE_LAYERS.split(",")]
    rows = []
    for sample, label in _leopard_and_brick(patterns):
        engine = synthesis.build_engine(FilterContext(seed=1), {"model": "vgg16-hed", "precision": "auto", "tile_size": 512}, layers, None)
        began = time.perf_counter()
        old, _ = synthesis.synthesise(engine, sample, (size, size), steps=steps, octaves=0, wrap=False, rng=FilterContext(seed=1).rng(1),
                                      boundary="reflect", fine_layers=synthesis.FINE_LAYERS, **synthesis.TEXTURE_SCHEDULE)
        old = np.clip(synthesis.match_colours(old, sample), 0.0, 1.0)
        old_label = f"--steps {steps}, shallow finest octave: {time.perf_counter() - began:.0f} s"
        began = time.perf_counter()
        new = neurofilters.apply("texture", np.zeros((size, size, 3), np.float32), seed=1, source=sample, steps=steps).pixels
        rows.append([(sample, label), (old, old_label), (new, f"--steps {steps} now, every layer: {time.perf_counter() - began:.0f} s")])
        print("more steps", label, flush=True)
    _sheet(rows, size).save(ASSETS / "texture-more-steps.jpg", quality=85)


if __name__ == "__main__":
    main()
