"""Layered images: the layer tree read from GIMP's ``.xcf`` (:mod:`.xcf_read`) and
OpenRaster ``.ora`` read and written (GIMP, Krita and MyPaint open it with layers).

A :class:`LayeredImage` keeps its layers top first as a tree: layer groups hold
their children (nested to any depth), each layer its name, offsets,
visibility, opacity, blend mode (GIMP's own mode number when read from XCF, and
the nearest OpenRaster composite-op), mask, and the names of GIMP 3
non-destructive filters stored with it (not applied; the reader warns). The
image keeps the input's precision so an XCF written back has it too.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from ..core.errors import ImageIOError

if TYPE_CHECKING:
    from .files import ProtectedFiles

__all__ = [
    "Layer", "LayeredImage", "read_xcf", "write_ora", "read_ora", "composite", "map_layers", "raster_layers",
    "apply_masks", "ora_op",
]

#: GIMP layer mode number (``GimpLayerMode``, legacy and GIMP 2.10+ modes) -> OpenRaster composite-op.
_MODE_OPS: dict[int, str] = {
    3: "svg:multiply", 30: "svg:multiply",
    4: "svg:screen", 31: "svg:screen",
    5: "svg:overlay", 23: "svg:overlay",
    6: "svg:difference", 32: "svg:difference",
    7: "svg:plus", 33: "svg:plus",
    9: "svg:darken", 35: "svg:darken",
    10: "svg:lighten", 36: "svg:lighten",
    11: "svg:hue", 37: "svg:hue", 24: "svg:hue",
    12: "svg:saturation", 38: "svg:saturation", 25: "svg:saturation",
    13: "svg:color", 39: "svg:color", 26: "svg:color",
    14: "svg:luminosity", 40: "svg:luminosity", 27: "svg:luminosity",
    16: "svg:color-dodge", 42: "svg:color-dodge",
    17: "svg:color-burn", 43: "svg:color-burn",
    18: "svg:hard-light", 44: "svg:hard-light",
    19: "svg:soft-light", 45: "svg:soft-light",
}

#: GIMP's pass-through mode of layer groups.
PASS_THROUGH = 61


def ora_op(mode: int) -> str:
    """The OpenRaster composite-op nearest to a GIMP layer mode (``svg:src-over`` when none is near)."""
    return _MODE_OPS.get(mode, "svg:src-over")


@dataclass(frozen=True)
class Layer:
    """One layer, or a layer group.

    Attributes:
        name: The layer's name.
        pixels: float32 ``h x w x 4`` (RGBA, straight alpha, perceptual colour) in [0, 1];
            ``None`` for a group.
        x: Left offset in the canvas (absolute, also inside groups).
        y: Top offset in the canvas.
        visible: Whether the layer is shown.
        opacity: In [0, 1].
        composite_op: OpenRaster composite operation (``svg:src-over``, ...).
        mode: GIMP's layer mode number (kept exactly for XCF output); ``None``
            derives it from ``composite_op``.
        mask: The layer mask, float32 ``h x w`` in [0, 1] (the layer's size), or ``None``.
        apply_mask: Whether the mask is applied (GIMP's "Apply layer mask").
        children: A group's layers, top first; ``None`` for a raster layer.
        filters: GIMP 3 non-destructive filters stored with the layer, as
            ``"name (gegl:operation)"``; read, not applied.
        text: The layer was a GIMP text layer (read as its pixels).
    """

    name: str
    pixels: Any
    x: int = 0
    y: int = 0
    visible: bool = True
    opacity: float = 1.0
    composite_op: str = "svg:src-over"
    mode: int | None = None
    mask: Any = None
    apply_mask: bool = True
    children: tuple[Layer, ...] | None = None
    filters: tuple[str, ...] = ()
    text: bool = False

    @property
    def is_group(self) -> bool:
        """Whether this is a layer group."""
        return self.children is not None


@dataclass(frozen=True)
class LayeredImage:
    """A canvas size and its layer tree, top first.

    Attributes:
        width: Canvas width.
        height: Canvas height.
        layers: The top-level layers and groups, top first.
        precision: Component kind of the source (``u8``, ``u16``, ``u32``, ``half``, ``float``, ``double``).
        linear: The source stored linear light (pixels here are perceptual either way).
        warnings: What the reader could not keep (non-destructive filters, ...), one sentence each.
    """

    width: int
    height: int
    layers: tuple[Layer, ...]
    precision: str = "u8"
    linear: bool = False
    warnings: tuple[str, ...] = ()


def _walk(layers: Iterable[Layer]) -> Iterator[Layer]:
    for layer in layers:
        yield layer
        if layer.children is not None:
            yield from _walk(layer.children)


def raster_layers(image: LayeredImage) -> list[Layer]:
    """Every raster (non-group) layer, top first, groups opened in place."""
    return [layer for layer in _walk(image.layers) if layer.children is None]


def read_xcf(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LayeredImage:
    """Read an ``.xcf`` file's layer tree (GIMP 2.10 and 3.x; every precision, RGB, grey, indexed).

    Args:
        path: The file.
        max_pixels: Largest accepted canvas, and largest accepted layer, in
            pixels, checked from the headers before any pixel is decoded;
            ``None`` uses Pillow's ``Image.MAX_IMAGE_PIXELS`` (as
            :func:`~neurofilters.plugin_host.imageio.files.load_image`), 0 disables the check.

    Raises:
        ImageIOError: The file is empty, truncated, damaged or not an XCF file
            (naming the file and what is wrong), or the canvas or a layer has
            more pixels than ``max_pixels``.
    """
    from .xcf_read import read_xcf_tree

    raw = read_xcf_tree(path, max_pixels=max_pixels)
    warnings: list[str] = []
    nodes: list[dict[str, Any]] = []
    top: list[dict[str, Any]] = []
    groups: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for item in raw.layers:
        node: dict[str, Any] = {"raw": item, "children": [] if item.is_group else None}
        if item.path:
            siblings = groups.get(tuple(item.path[:-1]))
            if siblings is None:
                raise ImageIOError(f"The XCF file {path} is damaged: layer {item.name!r} is in a group that does not exist.")
            full = tuple(item.path)
        else:
            siblings, full = top, (len(top),)
        siblings.append(node)
        if item.is_group:
            groups[full] = node["children"]
        nodes.append(node)
        for filter_name, operation in item.filters:
            warnings.append(
                f"layer {item.name!r} has the GIMP non-destructive filter {filter_name!r} ({operation}), which is not "
                "applied: the layer's stored pixels (without the filter) are processed and the filter is not kept"
            )

    def freeze(node: dict[str, Any]) -> Layer:
        item = node["raw"]
        return Layer(
            name=item.name, pixels=item.pixels, x=item.x, y=item.y, visible=item.visible, opacity=item.opacity,
            composite_op=ora_op(item.mode), mode=item.mode, mask=item.mask, apply_mask=item.apply_mask,
            children=None if node["children"] is None else tuple(freeze(child) for child in node["children"]),
            filters=tuple(f"{name} ({operation})" for name, operation in item.filters), text=item.is_text,
        )

    layers = tuple(freeze(node) for node in top)
    if not layers:
        raise ImageIOError(f"The XCF file {path} holds no layer (size {raw.width}x{raw.height}).")
    return LayeredImage(raw.width, raw.height, layers, raw.kind, raw.linear, tuple(warnings))


def _blend(op: str, dst: Any, src: Any) -> Any:
    import numpy as np

    if op == "svg:multiply":
        return dst * src
    if op == "svg:screen":
        return dst + src - dst * src
    if op == "svg:plus":
        return np.minimum(dst + src, 1.0)
    if op == "svg:darken":
        return np.minimum(dst, src)
    if op == "svg:lighten":
        return np.maximum(dst, src)
    if op == "svg:difference":
        return np.abs(dst - src)
    return src  # src-over and the non-separable modes (approximated)


def _masked(layer: Layer) -> Any:
    """The layer's RGBA with its mask multiplied into alpha (when the mask is applied)."""
    import numpy as np

    if layer.mask is None or not layer.apply_mask or layer.pixels is None:
        return layer.pixels
    pixels = np.array(layer.pixels, dtype=np.float32, copy=True)
    pixels[..., 3] *= np.asarray(layer.mask, dtype=np.float32)[: pixels.shape[0], : pixels.shape[1]]
    return pixels


def _paint(canvas: Any, src: Any, x: int, y: int, opacity: float, op: str) -> None:
    """Blend ``src`` (straight RGBA) at ``(x, y)`` onto ``canvas`` in place."""
    import numpy as np

    height, width = canvas.shape[:2]
    h, w = src.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return
    src = src[y0 - y : y1 - y, x0 - x : x1 - x]
    dst = canvas[y0:y1, x0:x1]
    sa = src[..., 3:4] * opacity
    da = dst[..., 3:4]
    colour = (1 - da) * src[..., :3] + da * _blend(op, dst[..., :3], src[..., :3])
    out_a = sa + da * (1 - sa)
    premult = sa * colour + da * (1 - sa) * dst[..., :3]
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(out_a > 0, premult / np.maximum(out_a, 1e-12), 0.0)
    canvas[y0:y1, x0:x1] = np.concatenate([rgb, out_a], axis=2)


def _composite_into(canvas: Any, layers: tuple[Layer, ...]) -> None:
    import numpy as np

    for layer in reversed(layers):
        if not layer.visible or layer.opacity <= 0:
            continue
        if layer.children is not None:
            group = np.zeros_like(canvas)
            _composite_into(group, layer.children)
            if layer.mask is not None and layer.apply_mask:
                mask = np.zeros(canvas.shape[:2], np.float32)
                _paint_mask(mask, layer)
                group[..., 3] *= mask
            _paint(canvas, group, 0, 0, layer.opacity, _op(layer))
        else:
            _paint(canvas, _masked(layer), layer.x, layer.y, layer.opacity, _op(layer))


def _paint_mask(target: Any, layer: Layer) -> None:
    """A group's mask placed on the canvas (outside it nothing shows)."""
    h, w = layer.mask.shape[:2]
    x0, y0 = max(layer.x, 0), max(layer.y, 0)
    x1, y1 = min(layer.x + w, target.shape[1]), min(layer.y + h, target.shape[0])
    if x1 > x0 and y1 > y0:
        target[y0:y1, x0:x1] = layer.mask[y0 - layer.y : y1 - layer.y, x0 - layer.x : x1 - layer.x]


def composite(image: LayeredImage, *, max_pixels: int | None = None, source: str | os.PathLike[str] = "layered image") -> Any:
    """Flatten the visible layers (groups composited first, masks applied) onto a transparent canvas (float32 ``H x W x 4``).

    Normal, multiply, screen, addition, darken, lighten and difference are
    composited exactly (in perceptual values, like GIMP's legacy modes); other
    modes, and groups' pass-through, are approximated by normal.

    Args:
        image: The layers.
        max_pixels: Largest canvas allocated (as in :func:`read_xcf`; 0: no limit).
        source: What the image was read from, for the limit's message.

    Raises:
        ImageIOError: The canvas has more pixels than ``max_pixels``.
    """
    import numpy as np

    from .files import check_pixel_limit

    check_pixel_limit(source, image.width, image.height, max_pixels)
    canvas = np.zeros((image.height, image.width, 4), dtype=np.float32)
    _composite_into(canvas, image.layers)
    return np.clip(canvas, 0.0, 1.0)


def apply_masks(image: LayeredImage) -> LayeredImage:
    """A copy with every raster layer's applied mask multiplied into its alpha (and removed).

    Masks switched off in GIMP (``apply_mask`` false) and groups' masks stay as they are.
    """

    def bake(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
        out = []
        for layer in layers:
            if layer.children is not None:
                out.append(replace(layer, children=bake(layer.children)))
            elif layer.mask is not None and layer.apply_mask:
                out.append(replace(layer, pixels=_masked(layer), mask=None))
            else:
                out.append(layer)
        return tuple(out)

    return replace(image, layers=bake(image.layers))


def map_layers(image: LayeredImage, function: Callable[[int, Layer], Any]) -> LayeredImage:
    """A copy of ``image`` with each raster layer's pixels replaced by ``function(index, layer)``.

    Raster layers are numbered top first with groups opened in place (the
    order of :func:`raster_layers`); groups, masks and every other property
    are kept. ``function`` gets RGBA pixels and returns RGBA (or RGB, whose
    alpha is then taken from the original layer) of the same size.
    """
    import numpy as np

    counter = [0]

    def one(layer: Layer) -> Layer:
        if layer.children is not None:
            return replace(layer, children=tuple(one(child) for child in layer.children))
        index = counter[0]
        counter[0] += 1
        result = np.asarray(function(index, layer), dtype=np.float32)
        if result.shape[:2] != layer.pixels.shape[:2]:
            raise ImageIOError(
                f"A per-layer filter must keep the layer size. Received: {result.shape[:2]} for layer "
                f"{layer.name!r} of size {layer.pixels.shape[:2]}; use --xcf flatten for this filter."
            )
        if result.shape[2] == 3:
            result = np.concatenate([result, layer.pixels[..., 3:4]], axis=2)
        return replace(layer, pixels=result)

    return replace(image, layers=tuple(one(layer) for layer in image.layers))


def _png_bytes(pixels: Any) -> bytes:
    import numpy as np
    from PIL import Image

    data = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data, "RGBA" if data.shape[2] == 4 else "RGB").save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def _op(layer: Layer) -> str:
    """The layer's OpenRaster composite-op: from its GIMP mode when it has one."""
    return ora_op(layer.mode) if layer.mode is not None else layer.composite_op


def _stack_xml(image: LayeredImage) -> tuple[str, list[tuple[str, Any]]]:
    """``stack.xml`` (groups as nested stacks) and the ``(archive name, pixels)`` of every layer PNG."""
    lines = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        f'<image version="0.0.3" w="{image.width}" h="{image.height}">',
        "  <stack>",
    ]
    files: list[tuple[str, Any]] = []

    def common(layer: Layer) -> str:
        return (f"name={quoteattr(layer.name)} opacity=\"{layer.opacity:.6f}\" "
                f"visibility=\"{'visible' if layer.visible else 'hidden'}\" composite-op=\"{_op(layer)}\"")

    def emit(layers: tuple[Layer, ...], depth: int) -> None:
        pad = "  " * depth
        for layer in layers:
            if layer.children is not None:
                isolation = "auto" if layer.mode == PASS_THROUGH else "isolate"
                lines.append(f'{pad}<stack {common(layer)} isolation="{isolation}">')
                emit(layer.children, depth + 1)
                lines.append(f"{pad}</stack>")
                continue
            src = f"data/layer{len(files):03d}.png"
            files.append((src, _masked(layer)))  # OpenRaster has no layer masks: the mask goes into alpha
            lines.append(f'{pad}<layer {common(layer)} src="{src}" x="{layer.x}" y="{layer.y}"/>')

    emit(image.layers, 2)
    lines += ["  </stack>", "</image>", ""]
    return "\n".join(lines), files


def write_ora(
    path: str | os.PathLike[str], image: LayeredImage, *, protect: ProtectedFiles | Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Write an OpenRaster file atomically (temporary file in the same folder, then rename).

    The archive starts with the uncompressed ``mimetype`` entry, then
    ``stack.xml`` (layer groups as nested stacks), one 8-bit PNG per layer
    (OpenRaster has no layer masks: an applied mask is multiplied into the
    layer's alpha), ``mergedimage.png`` and
    ``Thumbnails/thumbnail.png`` (at most 256 pixels).

    Args:
        path: The file to write.
        image: The layers.
        protect: Files never overwritten (paths, or a prebuilt :class:`ProtectedFiles`).

    Raises:
        ImageIOError: ``path`` is protected (an input, also through a link) or cannot be written.
    """
    import numpy as np
    from PIL import Image

    from .files import ProtectedFiles, atomic_write

    target = Path(path)
    ProtectedFiles.of(protect).check(target)
    merged = composite(image, max_pixels=0)  # already in memory: no reading limit applies
    thumb = Image.fromarray(np.round(merged * 255).astype(np.uint8), "RGBA")
    thumb.thumbnail((256, 256))

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as temporary, zipfile.ZipFile(temporary, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster", compress_type=zipfile.ZIP_STORED)
        stack, files = _stack_xml(image)
        archive.writestr("stack.xml", stack, compress_type=zipfile.ZIP_DEFLATED)
        for name, pixels in files:
            archive.writestr(name, _png_bytes(pixels), compress_type=zipfile.ZIP_STORED)
        archive.writestr("mergedimage.png", _png_bytes(merged), compress_type=zipfile.ZIP_STORED)
        thumb_buffer = io.BytesIO()
        thumb.save(thumb_buffer, "PNG")
        archive.writestr("Thumbnails/thumbnail.png", thumb_buffer.getvalue(), compress_type=zipfile.ZIP_STORED)
    return target


def read_ora(path: str | os.PathLike[str]) -> LayeredImage:
    """Read an OpenRaster file (nested stacks become layer groups).

    Raises:
        ImageIOError: Not a valid OpenRaster file.
    """
    import xml.etree.ElementTree as ET

    import numpy as np
    from PIL import Image

    def common(node: Any) -> dict[str, Any]:
        return {
            "name": node.attrib.get("name", ""),
            "visible": node.attrib.get("visibility", "visible") != "hidden",
            "opacity": float(node.attrib.get("opacity", 1.0)),
            "composite_op": node.attrib.get("composite-op", "svg:src-over"),
        }

    try:
        with zipfile.ZipFile(path) as archive:
            if archive.read("mimetype") != b"image/openraster":
                raise ImageIOError(f"{path} is not an OpenRaster file (wrong mimetype entry).")
            root = ET.fromstring(archive.read("stack.xml"))

            def stack(node: Any, dx: int, dy: int) -> tuple[Layer, ...]:
                layers = []
                for child in node:
                    x, y = dx + int(child.attrib.get("x", 0)), dy + int(child.attrib.get("y", 0))
                    if child.tag == "stack":
                        mode = PASS_THROUGH if child.attrib.get("isolation", "isolate") == "auto" else None
                        layers.append(Layer(pixels=None, x=x, y=y, children=stack(child, x, y), mode=mode, **common(child)))
                    elif child.tag == "layer":
                        with Image.open(io.BytesIO(archive.read(child.attrib["src"]))) as png:
                            pixels = np.asarray(png.convert("RGBA"), dtype=np.float32) / 255.0
                        layers.append(Layer(pixels=pixels, x=x, y=y, **common(child)))
                return tuple(layers)

            top = root.find("stack")
            layers = stack(top, 0, 0) if top is not None else ()
            return LayeredImage(int(root.attrib["w"]), int(root.attrib["h"]), layers)
    except ImageIOError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, ET.ParseError) as error:
        raise ImageIOError(f"Cannot read the OpenRaster file {path}: {type(error).__name__}: {error}") from None
