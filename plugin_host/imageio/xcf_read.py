"""Reading GIMP's ``.xcf`` files (GIMP 2.10 and 3.x): the layer tree, every precision, masks.

Everything is read here, with no third-party XCF parser (``gimpformats``
stops at property ids it does not know, which GIMP 3 adds, and decodes only
8-bit tiles; making it tolerant meant replacing its methods process-wide):

- **Properties**: the format gives every property its id and length, so the
  image's and each layer's property lists are read as ``id -> payload``
  (:meth:`_Bytes.skip_props`) and only the ones used are decoded (offsets,
  visibility, opacity, mode, group, item path, parasites, compression,
  colour map); ids and values a newer GIMP adds are skipped by their length, so
  a newer GIMP never breaks a read.
- **Pixels**: tiles are decoded for every precision (8/16/32-bit integer,
  16/32/64-bit float, linear or perceptual), every compression (none, RLE,
  zlib) and every base type (RGB, grey, indexed), with the layer masks.

Also read here: GIMP 3's non-destructive filters stored with a layer (their
names and GEGL operations, so callers can warn: they are not applied). The
layout follows GIMP's format notes (``devel-docs/xcf.txt``) and files GIMP 3.0
writes (checked in ``tests/test_xcf_real.py`` against GIMP's own pixels).
Damaged files give an :class:`ImageIOError` saying what is wrong (empty,
truncated, not an XCF file); sizes are checked before pixels are allocated.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from ..core.errors import ImageIOError

__all__ = ["read_xcf_tree", "PRECISIONS", "precision_code", "precision_of"]

TILE = 64
_PROP_END, _PROP_COLORMAP, _PROP_OPACITY, _PROP_MODE = 0, 1, 6, 7
_PROP_COMPRESSION, _PROP_FLOAT_OPACITY, _PROP_APPLY_MASK = 17, 33, 11
_PROP_TEXT_LAYER_FLAGS = 26
_PROP_VISIBLE, _PROP_OFFSETS, _PROP_PARASITES = 8, 15, 21
_PROP_GROUP_ITEM, _PROP_ITEM_PATH = 29, 30
_MAX_PROPS = 100_000

#: Component kinds by GIMP's precision hundreds digit: name, numpy dtype (big-endian), integer scale.
PRECISIONS: dict[int, tuple[str, str, float]] = {
    1: ("u8", "u1", 255.0),
    2: ("u16", ">u2", 65535.0),
    3: ("u32", ">u4", 4294967295.0),
    5: ("half", ">f2", 0.0),
    6: ("float", ">f4", 0.0),
    7: ("double", ">f8", 0.0),
}
_KIND_DIGIT = {name: digit for digit, (name, _, _) in PRECISIONS.items()}


def precision_code(kind: str, linear: bool) -> int:
    """GIMP's precision number (XCF version 7 and later) for a component kind and encoding."""
    return _KIND_DIGIT[kind] * 100 + (0 if linear else 50)


def precision_of(version: int, code: int) -> tuple[str, bool]:
    """``(component kind, linear)`` of an XCF header's precision field."""
    if version < 4:
        return "u8", False
    if version == 4:
        table = (("u8", False), ("u16", False), ("u32", True), ("half", True), ("float", True))
        if not 0 <= code < len(table):
            raise ValueError(f"unknown precision {code}")
        return table[code]
    digit = code // 100
    if version in (5, 6):  # 0: u8 ... 4: float (development versions)
        digit = {0: 1, 1: 2, 2: 3, 3: 5, 4: 6}.get(digit, -1)
    if digit not in PRECISIONS:
        raise ValueError(f"unknown precision {code}")
    return PRECISIONS[digit][0], code % 100 == 0


# -- the raw tree --------------------------------------------------------------------------------
@dataclass
class RawLayer:
    """One layer as stored: properties, pixels (float32 RGBA, perceptual), mask, filters."""

    name: str
    x: int
    y: int
    width: int
    height: int
    visible: bool
    opacity: float
    mode: int
    is_group: bool
    is_text: bool
    path: tuple[int, ...]
    pixels: Any
    mask: Any
    apply_mask: bool
    filters: tuple[tuple[str, str], ...]


@dataclass
class RawImage:
    """An XCF's canvas, precision and layers in file order (top first, groups before their children)."""

    width: int
    height: int
    version: int
    base_type: int
    kind: str
    linear: bool
    layers: list[RawLayer]


class _Bytes:
    """Bounds-checked big-endian reads from the file's bytes; running past the end says 'truncated'."""

    def __init__(self, data: bytes, path: str, version: int) -> None:
        self.data = data
        self.path = path
        self.version = version
        self.pointer = 8 if version >= 11 else 4

    def need(self, at: int, size: int, what: str) -> None:
        if at < 0 or size < 0 or at + size > len(self.data):
            raise ImageIOError(
                f"The XCF file {self.path} is truncated or damaged: {what} at byte {at:,} needs {size:,} bytes "
                f"but the file has {len(self.data):,}."
            )

    def u32(self, at: int, what: str) -> int:
        self.need(at, 4, what)
        return int(struct.unpack_from(">I", self.data, at)[0])

    def ptr(self, at: int, what: str) -> int:
        self.need(at, self.pointer, what)
        return int(struct.unpack_from(">Q" if self.pointer == 8 else ">I", self.data, at)[0])

    def string(self, at: int, what: str) -> tuple[str, int]:
        size = self.u32(at, what)
        self.need(at + 4, size, what)
        raw = self.data[at + 4 : at + 4 + size]
        return raw.rstrip(b"\x00").decode("utf-8", errors="replace"), at + 4 + size

    def skip_props(self, at: int, what: str) -> tuple[dict[int, bytes], int]:
        props: dict[int, bytes] = {}
        for _ in range(_MAX_PROPS):
            kind, size = self.u32(at, what), self.u32(at + 4, what)
            if kind == _PROP_END:
                return props, at + 8
            self.need(at + 8, size, f"{what} (property {kind})")
            props[kind] = self.data[at + 8 : at + 8 + size]
            at += 8 + size
        raise ImageIOError(f"The XCF file {self.path} is damaged: {what} has no end of its property list.")


def _check_header(data: bytes, path: str) -> tuple[int, int, int, int, int]:
    """``(version, width, height, base type, precision code)``, or a clear error."""
    if not data:
        raise ImageIOError(f"The XCF file {path} is empty (0 bytes).")
    if not data.startswith(b"gimp xcf "[: len(data)]) or (len(data) >= 9 and not data.startswith(b"gimp xcf ")):
        raise ImageIOError(f"{path} is not an XCF file: it starts with {data[:14]!r}, not b'gimp xcf '.")
    if len(data) < 26:
        raise ImageIOError(f"The XCF file {path} is truncated: {len(data)} bytes, shorter than its header.")
    tag = data[9:13]
    if tag == b"file":
        version = 0
    elif tag[:1] == b"v" and tag[1:].isdigit():
        version = int(tag[1:])
    else:
        raise ImageIOError(f"{path} is not an XCF file GIMP writes: unknown version tag {data[:14]!r}.")
    width, height, base = struct.unpack_from(">III", data, 14)
    code = 150
    if version >= 4:
        if len(data) < 30:
            raise ImageIOError(f"The XCF file {path} is truncated: {len(data)} bytes, shorter than its header.")
        (code,) = struct.unpack_from(">I", data, 26)
    if base not in (0, 1, 2):
        raise ImageIOError(f"The XCF file {path} is damaged: unknown image type {base} (0 RGB, 1 grey, 2 indexed).")
    return version, width, height, base, code


def _decode_rle(data: bytes, at: int, end: int, bpp: int, count: int, where: str) -> bytes:
    """GIMP's RLE: each of the ``bpp`` byte planes run-length coded in turn; returns interleaved bytes."""
    import numpy as np

    planes = []
    for _plane in range(bpp):
        out = bytearray()
        done = 0
        while done < count:
            if at >= end:
                raise ValueError(f"RLE data of {where} ends early")
            op = data[at]
            if op < 127:  # a short run of one byte
                out += data[at + 1 : at + 2] * (op + 1)
                at += 2
                done += op + 1
            elif op > 128:  # a short stretch of literal bytes
                run = 256 - op
                out += data[at + 1 : at + 1 + run]
                at += 1 + run
                done += run
            elif op == 127:  # a long run of one byte
                run = (data[at + 1] << 8) | data[at + 2]
                out += data[at + 3 : at + 4] * run
                at += 4
                done += run
            else:  # a long stretch of literal bytes
                run = (data[at + 1] << 8) | data[at + 2]
                out += data[at + 3 : at + 3 + run]
                at += 3 + run
                done += run
        if len(out) != count:
            raise ValueError(f"RLE data of {where} overruns its tile or ends early")
        planes.append(out)
    stacked = np.frombuffer(b"".join(planes), dtype=np.uint8).reshape(bpp, count)
    return stacked.T.tobytes()


def _read_buffer(
    reader: _Bytes, at: int, compression: int, channels: int, kind: str, where: str, max_pixels: int | None,
    expected: tuple[int, int] | None,
) -> Any:
    """A hierarchy's pixels as float32 ``h x w x channels`` (components scaled to [0, 1] for integers)."""
    import numpy as np

    from .files import check_pixel_limit

    width, height, bpp = reader.u32(at, where), reader.u32(at + 4, where), reader.u32(at + 8, where)
    check_pixel_limit(where, width, height, max_pixels)  # the tile data's own size (a damaged header may understate it)
    if expected is not None and (width, height) != expected:
        raise ImageIOError(
            f"The XCF file {reader.path} is damaged: {where} stores {width} x {height} pixels, "
            f"its header says {expected[0]} x {expected[1]}."
        )
    digit = _KIND_DIGIT[kind]
    _, dtype, scale = PRECISIONS[digit]
    if reader.version < 12:  # GIMP 2.10 before XCF 12 stored high bit-depth components little-endian
        dtype = dtype.replace(">", "<")
    component = np.dtype(dtype).itemsize
    if bpp != channels * component:
        raise ImageIOError(
            f"The XCF file {reader.path} is damaged: {where} has {bpp} bytes per pixel, expected {channels * component} "
            f"({channels} channels of {kind})."
        )
    level_at = reader.ptr(at + 12, f"{where} level pointer")
    level_w, level_h = reader.u32(level_at, where), reader.u32(level_at + 4, where)
    if (level_w, level_h) != (width, height):
        raise ImageIOError(f"The XCF file {reader.path} is damaged: {where}'s level is {level_w} x {level_h}, not {width} x {height}.")
    columns, rows = -(-width // TILE), -(-height // TILE)
    tiles = columns * rows
    table = level_at + 8
    reader.need(table, (tiles + 1) * reader.pointer, f"{where} tile table")  # before allocating: a small file cannot claim a huge layer
    pointers = [reader.ptr(table + i * reader.pointer, where) for i in range(tiles + 1)]
    out = np.empty((height, width, bpp), dtype=np.uint8)
    full = TILE * TILE * bpp
    for index in range(tiles):
        ty, tx = divmod(index, columns)
        x0, y0 = tx * TILE, ty * TILE
        w, h = min(TILE, width - x0), min(TILE, height - y0)
        size = w * h * bpp
        start = pointers[index]
        end = pointers[index + 1] if pointers[index + 1] else min(len(reader.data), start + full * 2 + 1024)
        what = f"{where} tile {index}"
        if compression == 0:
            reader.need(start, size, what)
            raw = reader.data[start : start + size]
        elif compression == 1:
            reader.need(start, 1, what)
            try:
                raw = _decode_rle(reader.data, start, min(end, len(reader.data)), bpp, w * h, what)
            except (ValueError, IndexError) as error:
                raise ImageIOError(f"The XCF file {reader.path} is truncated or damaged: {error}.") from None
        elif compression == 2:
            reader.need(start, 1, what)
            inflater = zlib.decompressobj()
            try:
                raw = inflater.decompress(reader.data[start : min(end, len(reader.data))], size)  # never more than one tile
            except zlib.error as error:
                raise ImageIOError(f"The XCF file {reader.path} is damaged: {what}: {error}.") from None
            if len(raw) != size:
                raise ImageIOError(f"The XCF file {reader.path} is truncated or damaged: {what} holds {len(raw)} of {size} bytes.")
        else:
            raise ImageIOError(f"The XCF file {reader.path} uses compression {compression}, which GIMP does not write (0, 1, 2).")
        out[y0 : y0 + h, x0 : x0 + w] = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, bpp)
    values = out.reshape(height, width * channels * component).view(dtype).reshape(height, width, channels)
    pixels = values.astype(np.float32)
    if scale:
        pixels /= np.float32(scale)
    return pixels


def _srgb_encode(linear: Any) -> Any:
    import numpy as np

    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055).astype(np.float32)


def _to_rgba(values: Any, layer_type: int, linear: bool, colormap: Any) -> Any:
    """Stored channels -> float32 RGBA with perceptual (sRGB) colour in [0, 1]."""
    import numpy as np

    h, w, _ = values.shape
    rgba = np.empty((h, w, 4), np.float32)
    if layer_type in (1, 3, 5):
        np.clip(values[..., -1], 0.0, 1.0, out=rgba[..., 3])
    else:
        rgba[..., 3] = 1.0
    if layer_type in (4, 5):
        index = np.clip(np.round(values[..., 0] * 255), 0, 255).astype(np.intp)
        table = np.zeros((256, 3), np.float32)
        if colormap is not None and len(colormap):
            table[: len(colormap)] = colormap[:256]
        rgba[..., :3] = table[index]
        return rgba
    if layer_type in (0, 1):
        rgba[..., :3] = values[..., :3]
    else:
        rgba[..., :3] = values[..., :1]
    if linear:
        rgba[..., :3] = _srgb_encode(rgba[..., :3])
    else:
        np.clip(rgba[..., :3], 0.0, 1.0, out=rgba[..., :3])
    return rgba


_CHANNELS = {0: 3, 1: 4, 2: 1, 3: 2, 4: 1, 5: 2}


def _colormap(props: dict[int, bytes]) -> Any:
    import numpy as np

    raw = props.get(_PROP_COLORMAP)
    if not raw or len(raw) < 4:
        return None
    (count,) = struct.unpack_from(">I", raw, 0)
    body = raw[4 : 4 + 3 * min(count, 256)]
    return np.frombuffer(body[: len(body) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.float32) / 255.0


def read_xcf_tree(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> RawImage:
    """Read an XCF file's canvas, precision and every layer (groups, masks, filters) in file order.

    Args:
        path: The file.
        max_pixels: Largest accepted canvas and layer in pixels, checked from the
            headers before pixels are decoded (``None``: Pillow's limit; 0: none).

    Raises:
        ImageIOError: Empty, truncated, damaged or not an XCF file (saying which),
            or larger than ``max_pixels``.
    """
    from .files import check_pixel_limit

    name = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as error:
        raise ImageIOError(f"Cannot read the XCF file {name}: {error.strerror or error}") from None
    version, width, height, base, code = _check_header(data, name)
    if width < 1 or height < 1:
        raise ImageIOError(f"The XCF file {name} is damaged: its canvas is {width} x {height} pixels.")
    check_pixel_limit(name, width, height, max_pixels)
    try:
        kind, linear = precision_of(version, code)
    except ValueError:
        raise ImageIOError(f"The XCF file {name} has an unknown precision {code} (XCF version {version}).") from None
    reader = _Bytes(data, name, version)
    image_props, layer_pointers = _layer_list(reader, 30 if version >= 4 else 26)
    compression = image_props.get(_PROP_COMPRESSION, b"\x00")[:1]
    compression_code = compression[0] if compression else 0
    colormap = _colormap(image_props)

    layers = []
    for number, at in enumerate(layer_pointers, start=1):
        layer_w, layer_h = reader.u32(at, f"{name}, layer {number}"), reader.u32(at + 4, f"{name}, layer {number}")
        layer_type = reader.u32(at + 8, f"{name}, layer {number}")
        layer_name, after = reader.string(at + 12, f"{name}, layer {number}")
        where = f"{name}, layer {layer_name!r}"
        if layer_type not in _CHANNELS:
            raise ImageIOError(f"The XCF file {name} is damaged: layer {layer_name!r} has unknown type {layer_type}.")
        check_pixel_limit(where, layer_w, layer_h, max_pixels)
        props, after = reader.skip_props(after, where)
        hierarchy_at = reader.ptr(after, f"{where} pixel pointer")
        mask_at = reader.ptr(after + reader.pointer, f"{where} mask pointer")
        filters = _effects(reader, after + 2 * reader.pointer, hierarchy_at, where)
        is_group = _PROP_GROUP_ITEM in props
        pixels = None
        if not is_group:
            values = _read_buffer(reader, hierarchy_at, compression_code, _CHANNELS[layer_type], kind, where, max_pixels,
                                  (layer_w, layer_h))
            pixels = _to_rgba(values, layer_type, linear, colormap)
        mask = None
        if mask_at:
            mask_w, mask_h = reader.u32(mask_at, where), reader.u32(mask_at + 4, where)
            _, mask_after = reader.string(mask_at + 8, f"{where} mask")
            _, mask_after = reader.skip_props(mask_after, f"{where} mask")
            mask_hierarchy = reader.ptr(mask_after, f"{where} mask pixel pointer")
            mask = _read_buffer(reader, mask_hierarchy, compression_code, 1, kind, f"{where} mask", max_pixels,
                                (mask_w, mask_h))[..., 0]
            import numpy as np

            mask = np.clip(mask, 0.0, 1.0)
        opacity = _opacity(props)
        mode = struct.unpack(">I", props[_PROP_MODE][:4])[0] if len(props.get(_PROP_MODE, b"")) >= 4 else 0
        apply_mask = props.get(_PROP_APPLY_MASK, b"\x00\x00\x00\x01")[-1:] != b"\x00"
        x, y = struct.unpack(">ii", props[_PROP_OFFSETS][:8]) if len(props.get(_PROP_OFFSETS, b"")) >= 8 else (0, 0)
        visible = props[_PROP_VISIBLE][:4] != b"\x00\x00\x00\x00" if len(props.get(_PROP_VISIBLE, b"")) >= 4 else True
        path_bytes = props.get(_PROP_ITEM_PATH, b"")
        path = struct.unpack(f">{len(path_bytes) // 4}I", path_bytes[: len(path_bytes) // 4 * 4])
        layers.append(RawLayer(
            name=layer_name, x=int(x), y=int(y), width=layer_w, height=layer_h,
            visible=visible, opacity=opacity, mode=int(mode), is_group=is_group,
            is_text=_PROP_TEXT_LAYER_FLAGS in props or "gimp-text-layer" in _parasite_names(props.get(_PROP_PARASITES, b"")),
            path=tuple(int(step) for step in path), pixels=pixels, mask=mask, apply_mask=apply_mask, filters=filters,
        ))
    return RawImage(width, height, version, base, kind, linear, layers)


def _layer_list(reader: _Bytes, at: int) -> tuple[dict[int, bytes], list[int]]:
    """The image's properties and its layer pointers; every layer and channel pointer must land inside the file."""
    image_props, at = reader.skip_props(at, "the image properties")
    layers: list[int] = []
    for kind in ("layer", "channel"):
        for number in range(len(reader.data) // reader.pointer + 1):
            pointer = reader.ptr(at, f"the {kind} list")
            at += reader.pointer
            if pointer == 0:
                break
            if pointer + 12 > len(reader.data):
                raise ImageIOError(
                    f"The XCF file {reader.path} is truncated or damaged: {kind} {number + 1} points to byte {pointer:,}, "
                    f"past the end of the file ({len(reader.data):,} bytes)."
                )
            if kind == "layer":
                layers.append(pointer)
    return image_props, layers


def _parasite_names(raw: bytes) -> list[str]:
    """Names of the parasites in a ``PROP_PARASITES`` payload (name, flags, size, data each); stops at a damaged one."""
    names = []
    at = 0
    while at + 4 <= len(raw):
        (size,) = struct.unpack_from(">I", raw, at)
        if at + 4 + size + 8 > len(raw):
            break
        (length,) = struct.unpack_from(">I", raw, at + 8 + size)
        if at + 12 + size + length > len(raw):
            break
        names.append(raw[at + 4 : at + 4 + size].rstrip(b"\x00").decode("utf-8", errors="replace"))
        at += 12 + size + length
    return names


def _opacity(props: dict[int, bytes]) -> float:
    if len(props.get(_PROP_FLOAT_OPACITY, b"")) >= 4:
        value = float(struct.unpack(">f", props[_PROP_FLOAT_OPACITY][:4])[0])
    elif len(props.get(_PROP_OPACITY, b"")) >= 4:
        value = struct.unpack(">I", props[_PROP_OPACITY][:4])[0] / 255.0
    else:
        value = 1.0
    return min(max(value, 0.0), 1.0)


def _effects(reader: _Bytes, at: int, hierarchy_at: int, where: str) -> tuple[tuple[str, str], ...]:
    """GIMP 3's non-destructive filters of a layer: ``(name, GEGL operation)`` each.

    GIMP 3 writes a zero-terminated list of effect pointers after the mask
    pointer and before the pixels; older files put the pixels right there, so
    the list is read only when the pixel pointer leaves room for it.
    """
    found = []
    if hierarchy_at <= at:
        return ()
    while at + reader.pointer <= hierarchy_at:
        pointer = reader.ptr(at, f"{where} filter list")
        at += reader.pointer
        if pointer == 0:
            break
        try:
            filter_name, after = reader.string(pointer, f"{where} filter")
            _icon, after = reader.string(after, f"{where} filter")
            operation, _ = reader.string(after, f"{where} filter")
        except ImageIOError:
            filter_name, operation = "unreadable filter", "?"
        found.append((filter_name, operation))
    return tuple(found)
