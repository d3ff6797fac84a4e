"""Writing GIMP ``.xcf`` files (format version 0: 8-bit RGBA layers, uncompressed tiles).

Version 0 is the simplest XCF every GIMP since 1.x opens, GIMP 3 included:
a header, image properties, layer pointers, then per layer its properties
(name, opacity, visibility, offsets, blend mode) and a one-level tile
hierarchy of 64 x 64 tiles stored as interleaved RGBA bytes. The layout follows
GIMP's published format notes (``devel-docs/xcf.txt``); files written here are
checked by loading them in a real GIMP 3 (tests/test_layered_gimp.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ImageIOError
from .layered import LayeredImage

if TYPE_CHECKING:
    from .files import ProtectedFiles

__all__ = ["write_xcf", "XCF_MODES"]

_TILE = 64
_PROP_END = 0
_PROP_ACTIVE_LAYER = 2
_PROP_OPACITY = 6
_PROP_MODE = 7
_PROP_VISIBLE = 8
_PROP_OFFSETS = 15
_PROP_COMPRESSION = 17
_RGB_IMAGE = 0
_RGBA_LAYER = 1

#: OpenRaster composite-op -> GIMP legacy layer mode number (valid in XCF version 0).
XCF_MODES: dict[str, int] = {
    "svg:src-over": 0,
    "svg:multiply": 3,
    "svg:screen": 4,
    "svg:overlay": 5,
    "svg:difference": 6,
    "svg:plus": 7,
    "svg:darken": 9,
    "svg:lighten": 10,
    "svg:hue": 11,
    "svg:saturation": 12,
    "svg:color": 13,
    "svg:luminosity": 14,
    "svg:color-dodge": 16,
    "svg:color-burn": 17,
    "svg:hard-light": 18,
    "svg:soft-light": 19,
}


def _prop(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">II", kind, len(payload)) + payload


def _string(text: str) -> bytes:
    data = text.encode("utf-8") + b"\x00"
    return struct.pack(">I", len(data)) + data


def _layer_bytes(layer: Any, offset: int, active: bool) -> bytes:
    """One layer (header, properties, hierarchy, level, tiles) placed at file ``offset``."""
    import numpy as np

    pixels = np.round(np.clip(np.asarray(layer.pixels, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 4:
        raise ImageIOError(f"XCF layers must be H x W x 4 (RGBA). Received: shape={pixels.shape} for layer {layer.name!r}")
    height, width = pixels.shape[:2]
    props = b""
    if active:
        props += _prop(_PROP_ACTIVE_LAYER)
    props += _prop(_PROP_OPACITY, struct.pack(">I", int(round(min(max(layer.opacity, 0.0), 1.0) * 255))))
    props += _prop(_PROP_VISIBLE, struct.pack(">I", 1 if layer.visible else 0))
    props += _prop(_PROP_OFFSETS, struct.pack(">ii", int(layer.x), int(layer.y)))
    props += _prop(_PROP_MODE, struct.pack(">I", XCF_MODES.get(layer.composite_op, 0)))
    props += _prop(_PROP_END)
    head = struct.pack(">III", width, height, _RGBA_LAYER) + _string(layer.name) + props
    hierarchy_at = offset + len(head) + 8  # after the hierarchy and mask pointers
    head += struct.pack(">II", hierarchy_at, 0)
    hierarchy = struct.pack(">III", width, height, 4)
    level_at = hierarchy_at + len(hierarchy) + 8  # one level pointer and the terminating zero
    hierarchy += struct.pack(">II", level_at, 0)
    tiles = [
        pixels[y : y + _TILE, x : x + _TILE].tobytes()
        for y in range(0, height, _TILE)
        for x in range(0, width, _TILE)
    ]
    level = struct.pack(">II", width, height)
    tile_at = level_at + len(level) + 4 * (len(tiles) + 1)
    pointers = []
    for tile in tiles:
        pointers.append(tile_at)
        tile_at += len(tile)
    level += struct.pack(f">{len(tiles) + 1}I", *pointers, 0)
    return head + hierarchy + level + b"".join(tiles)


def encode_xcf(image: LayeredImage) -> bytes:
    """The bytes of a version-0 XCF holding ``image``'s layers (top first)."""
    header = b"gimp xcf file\x00" + struct.pack(">III", image.width, image.height, _RGB_IMAGE)
    header += _prop(_PROP_COMPRESSION, b"\x00") + _prop(_PROP_END)
    pointers_size = 4 * (len(image.layers) + 1) + 4  # layer pointers + 0, channel list's 0
    offset = len(header) + pointers_size
    bodies, pointers = [], []
    for index, layer in enumerate(image.layers):
        body = _layer_bytes(layer, offset, active=index == 0)
        pointers.append(offset)
        bodies.append(body)
        offset += len(body)
    if offset >= 2**32:
        raise ImageIOError(f"The image is too large for an XCF version 0 file ({offset} bytes); write .ora instead.")
    return header + struct.pack(f">{len(pointers) + 2}I", *pointers, 0, 0) + b"".join(bodies)


def write_xcf(
    path: str | os.PathLike[str], image: LayeredImage, *, protect: ProtectedFiles | Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Write ``image`` as an ``.xcf`` file atomically.

    Args:
        path: The file to write.
        image: The layers.
        protect: Files never overwritten (paths, or a prebuilt :class:`ProtectedFiles`).

    Raises:
        ImageIOError: ``path`` is protected (an input, also through a link), a
            layer is malformed, or the file cannot be written.
    """
    from .files import ProtectedFiles, atomic_write

    target = Path(path)
    ProtectedFiles.of(protect).check(target)
    data = encode_xcf(image)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as temporary:
        temporary.write_bytes(data)
    return target
