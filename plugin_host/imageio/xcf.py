"""Writing GIMP ``.xcf`` files with the layer tree intact (XCF version 13, as GIMP 2.10 and 3 write).

What is kept: layer groups and their nesting (``PROP_GROUP_ITEM`` and
``PROP_ITEM_PATH``), layer masks (also on groups), offsets, opacity,
visibility, GIMP's exact layer mode number, and the precision (8/16/32-bit
integer, 16/32/64-bit float, linear or perceptual). Layers are RGBA; tiles are
64 x 64, zlib-compressed, components big-endian (XCF 12 and later); pointers are
64-bit (XCF 11 and later). The layout follows GIMP's published format notes
(``devel-docs/xcf.txt``) and GIMP's reader; no library writes XCF (the
``gimpformats`` package's writer is unfinished by its own README), hence this
module. Files written here are checked by loading them in a real GIMP 3
(``tests/test_xcf_real.py``, ``tests/test_layered_gimp.py``).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ImageIOError
from .layered import Layer, LayeredImage
from .xcf_read import PRECISIONS, precision_code

if TYPE_CHECKING:
    from .files import ProtectedFiles

__all__ = ["write_xcf", "encode_xcf", "XCF_MODES", "XCF_VERSION"]

XCF_VERSION = 13
_TILE = 64
_PROP_END = 0
_PROP_ACTIVE_LAYER = 2
_PROP_OPACITY = 6
_PROP_MODE = 7
_PROP_VISIBLE = 8
_PROP_APPLY_MASK = 11
_PROP_EDIT_MASK = 12
_PROP_SHOW_MASK = 13
_PROP_OFFSETS = 15
_PROP_COMPRESSION = 17
_PROP_GROUP_ITEM = 29
_PROP_ITEM_PATH = 30
_PROP_GROUP_ITEM_FLAGS = 31
_PROP_FLOAT_OPACITY = 33
_RGB_IMAGE = 0
_RGBA_LAYER = 1
_ZLIB = 2

#: OpenRaster composite-op -> GIMP legacy layer mode number (for layers without a GIMP mode, e.g. read from ORA).
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


def _ptr(value: int) -> bytes:
    return struct.pack(">Q", value)


def _srgb_decode(encoded: Any) -> Any:
    import numpy as np

    encoded = np.clip(encoded, 0.0, 1.0)
    return np.where(encoded <= 0.04045, encoded / 12.92, np.power((encoded + 0.055) / 1.055, 2.4)).astype(np.float32)


class _Encoder:
    """Lays the file out front to back: each structure is appended and its offset returned."""

    def __init__(self, image: LayeredImage) -> None:
        if image.precision not in {name for name, _, _ in PRECISIONS.values()}:
            raise ImageIOError(f"Unknown XCF precision {image.precision!r}; use one of u8, u16, u32, half, float, double.")
        self.image = image
        self.chunks: list[bytes] = []
        self.size = 0
        digit = next(d for d, (name, _, _) in PRECISIONS.items() if name == image.precision)
        _, self.dtype, self.scale = PRECISIONS[digit]

    def append(self, data: bytes) -> int:
        at = self.size
        self.chunks.append(data)
        self.size += len(data)
        return at

    def _components(self, values: Any, colour: bool) -> bytes:
        """float32 ``h x w x c`` in [0, 1] (perceptual colour) -> the precision's big-endian bytes."""
        import numpy as np

        values = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
        if colour and self.image.linear:
            values = np.concatenate([_srgb_decode(values[..., :3]), values[..., 3:]], axis=-1)
        if self.scale:
            return np.round(values.astype(np.float64) * self.scale).astype(self.dtype).tobytes()
        return values.astype(self.dtype).tobytes()

    def buffer(self, values: Any, colour: bool) -> int:
        """A hierarchy (one level, zlib tiles) holding ``values`` (``h x w x c``); returns its offset."""
        import numpy as np

        height, width, channels = values.shape
        bpp = channels * np.dtype(self.dtype).itemsize
        tiles = []
        for y in range(0, height, _TILE):
            for x in range(0, width, _TILE):
                tiles.append(zlib.compress(self._components(values[y : y + _TILE, x : x + _TILE], colour), 1))
        hierarchy_at = self.size
        level_at = hierarchy_at + 12 + 16  # width, height, bpp; one level pointer and the terminating zero
        self.append(struct.pack(">III", width, height, bpp) + _ptr(level_at) + _ptr(0))
        tile_at = level_at + 8 + 8 * (len(tiles) + 1)
        pointers = []
        for tile in tiles:
            pointers.append(tile_at)
            tile_at += len(tile)
        self.append(struct.pack(">II", width, height) + b"".join(_ptr(p) for p in pointers) + _ptr(0))
        for tile in tiles:
            self.append(tile)
        return hierarchy_at

    def mask(self, layer: Layer, width: int, height: int) -> int:
        """A layer mask channel (the layer's size); returns its offset."""
        import numpy as np

        mask = np.asarray(layer.mask, dtype=np.float32)
        if mask.shape[:2] != (height, width):
            raise ImageIOError(
                f"The mask of layer {layer.name!r} is {mask.shape[1]} x {mask.shape[0]}, the layer {width} x {height}; "
                "a mask must have its layer's size."
            )
        props = (_prop(_PROP_OPACITY, struct.pack(">I", 255)) + _prop(_PROP_FLOAT_OPACITY, struct.pack(">f", 1.0))
                 + _prop(_PROP_VISIBLE, struct.pack(">I", 1)) + _prop(_PROP_END))
        head = struct.pack(">II", width, height) + _string(f"{layer.name} mask") + props
        at = self.size
        hierarchy_at = at + len(head) + 8
        self.append(head + _ptr(hierarchy_at))
        written = self.buffer(mask.reshape(height, width, 1), colour=False)
        assert written == hierarchy_at
        return at

    def layer(self, layer: Layer, path: tuple[int, ...], active: bool) -> int:
        """One layer or group header, its pixels and mask; returns its offset."""
        import numpy as np

        if layer.children is not None:
            x0, y0, x1, y1 = _bounds(layer)
            width, height = max(x1 - x0, 1), max(y1 - y0, 1)
            x, y = (x0, y0) if x1 > x0 else (layer.x, layer.y)
            pixels = np.zeros((height, width, 4), np.float32)  # GIMP recomputes a group's pixels on load
        else:
            pixels = np.asarray(layer.pixels, dtype=np.float32)
            if pixels.ndim != 3 or pixels.shape[2] != 4:
                raise ImageIOError(f"XCF layers must be H x W x 4 (RGBA). Received: shape={pixels.shape} for layer {layer.name!r}")
            height, width = pixels.shape[:2]
            x, y = layer.x, layer.y
        if layer.mask is not None and layer.children is not None:
            mask = np.asarray(layer.mask)
            height, width = mask.shape[:2]
            x, y = layer.x, layer.y
            pixels = np.zeros((height, width, 4), np.float32)
        mode = layer.mode if layer.mode is not None else XCF_MODES.get(layer.composite_op, 0)
        opacity = min(max(float(layer.opacity), 0.0), 1.0)
        props = b""
        if layer.children is not None:
            props += _prop(_PROP_GROUP_ITEM)
        if len(path) > 1:
            props += _prop(_PROP_ITEM_PATH, struct.pack(f">{len(path)}I", *path))
        if active:
            props += _prop(_PROP_ACTIVE_LAYER)
        props += _prop(_PROP_OPACITY, struct.pack(">I", int(opacity * 255.999)))
        props += _prop(_PROP_FLOAT_OPACITY, struct.pack(">f", opacity))
        props += _prop(_PROP_VISIBLE, struct.pack(">I", 1 if layer.visible else 0))
        if layer.mask is not None:
            props += _prop(_PROP_APPLY_MASK, struct.pack(">I", 1 if layer.apply_mask else 0))
            props += _prop(_PROP_EDIT_MASK, struct.pack(">I", 0)) + _prop(_PROP_SHOW_MASK, struct.pack(">I", 0))
        props += _prop(_PROP_OFFSETS, struct.pack(">ii", int(x), int(y)))
        props += _prop(_PROP_MODE, struct.pack(">I", int(mode)))
        if layer.children is not None:
            props += _prop(_PROP_GROUP_ITEM_FLAGS, struct.pack(">I", 1))  # expanded in the Layers dock
        props += _prop(_PROP_END)
        head = struct.pack(">III", width, height, _RGBA_LAYER) + _string(layer.name) + props
        at = self.size
        pointers_at = at + len(head)
        self.append(head)
        slot = len(self.chunks)
        self.append(_ptr(0) + _ptr(0))  # pixel and mask pointers, filled in below
        hierarchy_at = self.buffer(pixels, colour=True)
        mask_at = self.mask(layer, width, height) if layer.mask is not None else 0
        self.chunks[slot] = _ptr(hierarchy_at) + _ptr(mask_at)
        assert pointers_at + 16 == hierarchy_at
        return at


def _bounds(layer: Layer) -> tuple[int, int, int, int]:
    """The box covering a group's raster descendants (empty: ``(0, 0, 0, 0)``)."""
    boxes = []
    stack = list(layer.children or ())
    while stack:
        item = stack.pop()
        if item.children is not None:
            stack.extend(item.children)
        elif item.pixels is not None:
            h, w = item.pixels.shape[:2]
            boxes.append((item.x, item.y, item.x + w, item.y + h))
    if not boxes:
        return 0, 0, 0, 0
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def encode_xcf(image: LayeredImage) -> bytes:
    """The bytes of an XCF holding ``image``'s layer tree (top first) in its precision."""
    flat: list[tuple[Layer, tuple[int, ...]]] = []

    def walk(layers: tuple[Layer, ...], parent: tuple[int, ...]) -> None:
        for index, layer in enumerate(layers):
            flat.append((layer, (*parent, index)))
            if layer.children is not None:
                walk(layer.children, (*parent, index))

    walk(image.layers, ())
    if not flat:
        raise ImageIOError("An XCF file needs at least one layer. Received: an image without layers.")
    encoder = _Encoder(image)
    header = f"gimp xcf v{XCF_VERSION:03d}".encode("ascii") + b"\x00"
    header += struct.pack(">IIII", image.width, image.height, _RGB_IMAGE, precision_code(image.precision, image.linear))
    header += _prop(_PROP_COMPRESSION, bytes([_ZLIB])) + _prop(_PROP_END)
    encoder.append(header)
    table = len(encoder.chunks)
    encoder.append(b"")  # layer pointers, then 0, then the (empty) channel list's 0
    encoder.size += 8 * (len(flat) + 2)
    offsets = [encoder.layer(layer, path, active=index == 0) for index, (layer, path) in enumerate(flat)]
    encoder.chunks[table] = b"".join(_ptr(offset) for offset in offsets) + _ptr(0) + _ptr(0)
    return b"".join(encoder.chunks)


def write_xcf(
    path: str | os.PathLike[str], image: LayeredImage, *, protect: ProtectedFiles | Iterable[str | os.PathLike[str]] = ()
) -> Path:
    """Write ``image`` as an ``.xcf`` file atomically (groups, masks, modes and precision kept).

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
