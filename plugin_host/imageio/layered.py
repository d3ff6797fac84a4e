"""Layered images: reading GIMP's ``.xcf`` (through ``gimpformats``) and
writing OpenRaster ``.ora`` (which GIMP, Krita and MyPaint open with layers).

Layers are kept top first, each with its name, offsets, visibility, opacity
and blend mode. Group layers are not reproduced: their leaf layers are kept
in stacking order (offsets are absolute in XCF, so placement is unchanged).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from ..core.errors import ImageIOError, ParameterError

if TYPE_CHECKING:
    from .files import ProtectedFiles

__all__ = ["Layer", "LayeredImage", "read_xcf", "write_ora", "read_ora", "composite", "map_layers"]

#: GIMP blend-mode names (gimpformats' enum names, legacy suffix removed) -> ORA composite-op.
_ORA_OPS: dict[str, str] = {
    "NORMAL": "svg:src-over",
    "MULTIPLY": "svg:multiply",
    "SCREEN": "svg:screen",
    "OVERLAY": "svg:overlay",
    "OLD_BROKEN_OVERLAY": "svg:overlay",
    "DIFFERENCE": "svg:difference",
    "ADDITION": "svg:plus",
    "DARKEN_ONLY": "svg:darken",
    "LIGHTEN_ONLY": "svg:lighten",
    "HUE": "svg:hue",
    "SATURATION": "svg:saturation",
    "COLOR": "svg:color",
    "HSL_COLOR": "svg:color",
    "VALUE": "svg:luminosity",
    "LCH_HUE": "svg:hue",
    "LCH_CHROMA": "svg:saturation",
    "LCH_COLOR": "svg:color",
    "LCH_LIGHTNESS": "svg:luminosity",
    "DODGE": "svg:color-dodge",
    "BURN": "svg:color-burn",
    "HARDLIGHT": "svg:hard-light",
    "SOFTLIGHT": "svg:soft-light",
}


@dataclass(frozen=True)
class Layer:
    """One raster layer.

    Attributes:
        name: The layer's name.
        pixels: float32 ``h x w x 4`` (RGBA, straight alpha) in [0, 1].
        x: Left offset in the canvas.
        y: Top offset in the canvas.
        visible: Whether the layer is shown.
        opacity: In [0, 1].
        composite_op: OpenRaster composite operation (``svg:src-over``, ...).
    """

    name: str
    pixels: Any
    x: int = 0
    y: int = 0
    visible: bool = True
    opacity: float = 1.0
    composite_op: str = "svg:src-over"


@dataclass(frozen=True)
class LayeredImage:
    """A canvas size and its layers, top first."""

    width: int
    height: int
    layers: tuple[Layer, ...]


def _blend_name(mode: Any) -> str:
    name = getattr(mode, "name", str(mode)).upper()
    return name[: -len("_LEGACY")] if name.endswith("_LEGACY") else name


def _to_rgba(image: Any) -> Any:
    import numpy as np

    if image.mode in ("I;16", "I", "F"):
        array = np.asarray(image, dtype=np.float32) / (65535.0 if image.mode == "I;16" else 1.0)
        grey = np.clip(array, 0, 1)[:, :, None]
        return np.concatenate([grey, grey, grey, np.ones_like(grey)], axis=2).astype(np.float32)
    return np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0


def read_xcf(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LayeredImage:
    """Read an ``.xcf`` file's layers.

    Args:
        path: The file.
        max_pixels: Largest accepted canvas, and largest accepted layer, in
            pixels, checked from the headers before any pixel is decoded;
            ``None`` uses Pillow's ``Image.MAX_IMAGE_PIXELS`` (as
            :func:`~neurofilters.plugin_host.imageio.files.load_image`), 0 disables the check.

    Raises:
        ImageIOError: The file cannot be parsed (naming the file and the
            cause), or the canvas or a layer has more pixels than ``max_pixels``.
    """
    from .files import check_pixel_limit

    try:
        from gimpformats.gimpXcfDocument import GimpDocument
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImageIOError(f"Reading XCF needs the 'gimpformats' package: pip install gimpformats ({error})") from None
    try:
        document = GimpDocument(os.fspath(path))  # headers only; layer pixels are decoded on access
        check_pixel_limit(path, int(document.width), int(document.height), max_pixels)
        layers = []
        for raw in document.raw_layers:
            if raw.isGroup:
                continue
            where = f"{os.fspath(path)}, layer {str(raw.name)!r}"
            check_pixel_limit(where, int(raw.width), int(raw.height), max_pixels)
            hierarchy = raw.imageHierarchy  # the tile data's own size (a damaged header may understate it)
            check_pixel_limit(where, int(hierarchy.width), int(hierarchy.height), max_pixels)
            image = raw.image
            if image is None:
                continue
            layers.append(
                Layer(
                    name=str(raw.name),
                    pixels=_to_rgba(image),
                    x=int(raw.xOffset),
                    y=int(raw.yOffset),
                    visible=bool(raw.visible),
                    opacity=float(raw.opacity) / (255.0 if float(raw.opacity) > 1.0 else 1.0),
                    composite_op=_ORA_OPS.get(_blend_name(raw.blendMode), "svg:src-over"),
                )
            )
        width, height = int(document.width), int(document.height)
    except (ImageIOError, ParameterError):
        raise
    except Exception as error:
        raise ImageIOError(f"Cannot read the XCF file {path}: {type(error).__name__}: {error}") from None
    if not layers or width < 1 or height < 1:
        raise ImageIOError(f"The XCF file {path} holds no raster layer (size {width}x{height}).")
    return LayeredImage(width, height, tuple(layers))


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


def composite(image: LayeredImage, *, max_pixels: int | None = None, source: str | os.PathLike[str] = "layered image") -> Any:
    """Flatten the visible layers onto a transparent canvas (float32 ``H x W x 4``).

    Normal, multiply, screen, addition, darken, lighten and difference are
    composited exactly; other modes are approximated by normal.

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
    for layer in reversed(image.layers):
        if not layer.visible or layer.opacity <= 0:
            continue
        h, w = layer.pixels.shape[:2]
        x0, y0 = max(layer.x, 0), max(layer.y, 0)
        x1, y1 = min(layer.x + w, image.width), min(layer.y + h, image.height)
        if x1 <= x0 or y1 <= y0:
            continue
        src = layer.pixels[y0 - layer.y : y1 - layer.y, x0 - layer.x : x1 - layer.x]
        dst = canvas[y0:y1, x0:x1]
        sa = src[..., 3:4] * layer.opacity
        da = dst[..., 3:4]
        colour = (1 - da) * src[..., :3] + da * _blend(layer.composite_op, dst[..., :3], src[..., :3])
        out_a = sa + da * (1 - sa)
        premult = sa * colour + da * (1 - sa) * dst[..., :3]
        with np.errstate(divide="ignore", invalid="ignore"):
            rgb = np.where(out_a > 0, premult / np.maximum(out_a, 1e-12), 0.0)
        canvas[y0:y1, x0:x1] = np.concatenate([rgb, out_a], axis=2)
    return np.clip(canvas, 0.0, 1.0)


def map_layers(image: LayeredImage, function: Callable[[int, Layer], Any]) -> LayeredImage:
    """A copy of ``image`` with each layer's pixels replaced by ``function(index, layer)``.

    ``function`` gets RGBA pixels and returns RGBA (or RGB, whose alpha is
    then taken from the original layer) of the same size.
    """
    import numpy as np

    layers = []
    for index, layer in enumerate(image.layers):
        result = np.asarray(function(index, layer), dtype=np.float32)
        if result.shape[:2] != layer.pixels.shape[:2]:
            raise ImageIOError(
                f"A per-layer filter must keep the layer size. Received: {result.shape[:2]} for layer "
                f"{layer.name!r} of size {layer.pixels.shape[:2]}; use --xcf flatten for this filter."
            )
        if result.shape[2] == 3:
            result = np.concatenate([result, layer.pixels[..., 3:4]], axis=2)
        layers.append(replace(layer, pixels=result))
    return replace(image, layers=tuple(layers))


def _png_bytes(pixels: Any) -> bytes:
    import numpy as np
    from PIL import Image

    data = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data, "RGBA" if data.shape[2] == 4 else "RGB").save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def _stack_xml(image: LayeredImage) -> str:
    lines = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        f'<image version="0.0.3" w="{image.width}" h="{image.height}">',
        "  <stack>",
    ]
    for index, layer in enumerate(image.layers):
        lines.append(
            f"    <layer name={quoteattr(layer.name)} src=\"data/layer{index:03d}.png\" x=\"{layer.x}\" y=\"{layer.y}\""
            f" opacity=\"{layer.opacity:.6f}\" visibility=\"{'visible' if layer.visible else 'hidden'}\""
            f" composite-op=\"{layer.composite_op}\"/>"
        )
    lines += ["  </stack>", "</image>", ""]
    return "\n".join(lines)


def write_ora(
    path: str | os.PathLike[str], image: LayeredImage, *, protect: ProtectedFiles | Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Write an OpenRaster file atomically (temporary file in the same folder, then rename).

    The archive starts with the uncompressed ``mimetype`` entry, then
    ``stack.xml``, one PNG per layer, ``mergedimage.png`` and
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
        archive.writestr("stack.xml", _stack_xml(image), compress_type=zipfile.ZIP_DEFLATED)
        for index, layer in enumerate(image.layers):
            archive.writestr(f"data/layer{index:03d}.png", _png_bytes(layer.pixels), compress_type=zipfile.ZIP_STORED)
        archive.writestr("mergedimage.png", _png_bytes(merged), compress_type=zipfile.ZIP_STORED)
        thumb_buffer = io.BytesIO()
        thumb.save(thumb_buffer, "PNG")
        archive.writestr("Thumbnails/thumbnail.png", thumb_buffer.getvalue(), compress_type=zipfile.ZIP_STORED)
    return target


def read_ora(path: str | os.PathLike[str]) -> LayeredImage:
    """Read an OpenRaster file written by :func:`write_ora` (flat stacks only).

    Raises:
        ImageIOError: Not a valid OpenRaster file.
    """
    import xml.etree.ElementTree as ET

    import numpy as np
    from PIL import Image

    try:
        with zipfile.ZipFile(path) as archive:
            if archive.read("mimetype") != b"image/openraster":
                raise ImageIOError(f"{path} is not an OpenRaster file (wrong mimetype entry).")
            root = ET.fromstring(archive.read("stack.xml"))
            layers = []
            for node in root.iter("layer"):
                with Image.open(io.BytesIO(archive.read(node.attrib["src"]))) as png:
                    pixels = np.asarray(png.convert("RGBA"), dtype=np.float32) / 255.0
                layers.append(
                    Layer(
                        name=node.attrib.get("name", ""),
                        pixels=pixels,
                        x=int(node.attrib.get("x", 0)),
                        y=int(node.attrib.get("y", 0)),
                        visible=node.attrib.get("visibility", "visible") != "hidden",
                        opacity=float(node.attrib.get("opacity", 1.0)),
                        composite_op=node.attrib.get("composite-op", "svg:src-over"),
                    )
                )
            return LayeredImage(int(root.attrib["w"]), int(root.attrib["h"]), tuple(layers))
    except ImageIOError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, ET.ParseError) as error:
        raise ImageIOError(f"Cannot read the OpenRaster file {path}: {type(error).__name__}: {error}") from None
