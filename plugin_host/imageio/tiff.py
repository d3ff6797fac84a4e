"""16-bit TIFF: a small writer, and full-precision reading through ``tifffile``.

Pillow reads 16-bit RGB(A) TIFFs at 8 bits and cannot write them. The writer
here produces baseline little-endian TIFFs (one IFD, Adobe-deflate strips,
unassociated alpha, optional ICC profile); reading uses ``tifffile`` when it
is installed (LZW-compressed files additionally need ``imagecodecs``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import NeurofiltersError
from .png import integer_samples

__all__ = ["TiffPage", "encode_tiff", "read_tiff_page"]

_SHORT, _LONG, _RATIONAL, _UNDEFINED = 3, 4, 5, 7
_TYPE_SIZES = {_SHORT: 2, _LONG: 4, _RATIONAL: 8, _UNDEFINED: 1}
_STRIP_BYTES = 1 << 18


def encode_tiff(samples: Any, *, icc_profile: bytes | None = None, compress_level: int = 6) -> bytes:
    """Encode an 8- or 16-bit image as a baseline TIFF.

    The output depends only on the arguments (no dates, no software tag).

    Args:
        samples: ``H x W x C`` (or ``H x W``) uint8 or uint16; C = 1 grey,
            2 grey+alpha, 3 RGB, 4 RGBA (alpha is stored unassociated).
        icc_profile: Stored in tag 34675.
        compress_level: zlib level 1-9 of the deflate strips.

    Returns:
        The file's bytes.

    Raises:
        ValueError: ``samples`` has an unsupported shape or dtype.
    """
    import numpy as np

    array = integer_samples(samples)
    height, width, channels = array.shape
    bits = array.dtype.itemsize * 8
    row_bytes = width * channels * array.dtype.itemsize
    rows_per_strip = max(1, min(height, _STRIP_BYTES // row_bytes))
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    strips = [
        zlib.compress(data[start * row_bytes : min(height, start + rows_per_strip) * row_bytes], compress_level)
        for start in range(0, height, rows_per_strip)
    ]

    # Layout: header | strips | out-of-line tag values | IFD.
    body = bytearray(b"II*\x00\x00\x00\x00\x00")
    strip_offsets = []
    for strip in strips:
        strip_offsets.append(len(body))
        body += strip
        if len(body) % 2:
            body += b"\x00"
    tags: list[tuple[int, int, list[int] | bytes]] = [
        (256, _LONG, [width]),
        (257, _LONG, [height]),
        (258, _SHORT, [bits] * channels),
        (259, _SHORT, [8]),  # Adobe deflate
        (262, _SHORT, [2 if channels >= 3 else 1]),  # RGB / BlackIsZero
        (273, _LONG, strip_offsets),
        (277, _SHORT, [channels]),
        (278, _LONG, [rows_per_strip]),
        (279, _LONG, [len(strip) for strip in strips]),
        (282, _RATIONAL, [72, 1]),
        (283, _RATIONAL, [72, 1]),
        (284, _SHORT, [1]),  # chunky
        (296, _SHORT, [2]),  # inch
    ]
    if channels in (2, 4):
        tags.append((338, _SHORT, [2]))  # unassociated alpha
    if icc_profile:
        tags.append((34675, _UNDEFINED, bytes(icc_profile)))
    tags.sort(key=lambda tag: tag[0])

    entries = []
    for tag, kind, values in tags:
        if kind == _UNDEFINED:
            payload, count = bytes(values), len(values)
        elif kind == _RATIONAL:
            payload, count = struct.pack(f"<{len(values)}I", *values), len(values) // 2
        else:
            code = "H" if kind == _SHORT else "I"
            payload, count = struct.pack(f"<{len(values)}{code}", *values), len(values)
        if len(payload) <= 4:
            entries.append(struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\x00"))
        else:
            offset = len(body)
            body += payload
            if len(body) % 2:
                body += b"\x00"
            entries.append(struct.pack("<HHII", tag, kind, count, offset))
    ifd_offset = len(body)
    body += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    body[4:8] = struct.pack("<I", ifd_offset)
    return bytes(body)


@dataclass
class TiffPage:
    """One page of a TIFF read by :func:`read_tiff_page`.

    Attributes:
        samples: ``H x W x C`` uint8, uint16 or float32 as stored.
        n_pages: Pages in the file.
        icc_profile: Tag 34675, if present.
        orientation: Tag 274 (1 when absent).
        associated_alpha: The alpha channel is premultiplied into the colours.
    """

    samples: Any
    n_pages: int
    icc_profile: bytes | None
    orientation: int
    associated_alpha: bool


def read_tiff_page(path: Path, frame: int, check: Callable[[int, int, int], None]) -> TiffPage | None:
    """Read a grey(+alpha) or RGB(A) TIFF page with ``tifffile``, for files Pillow cannot open.

    Args:
        path: The file.
        frame: Page index.
        check: ``check(n_pages, width, height)``, called before decoding; it
            raises to refuse the page (frame out of range, too many pixels).

    Returns:
        The page, or ``None`` when ``tifffile`` is missing or the page is not
        a layout this function maps (grey/RGB, 1-4 samples of 8/16-bit
        unsigned or 32/64-bit float).
    """
    try:
        import tifffile
    except ImportError:
        return None
    import numpy as np

    try:
        with tifffile.TiffFile(path) as tif:
            n_pages = len(tif.pages)
            size = (int(tif.pages[0].imagewidth), int(tif.pages[0].imagelength))
    except Exception:  # noqa: BLE001 - whatever tifffile cannot read is left to Pillow's error message
        return None
    check(n_pages, *size)  # frame in range, first page not a bomb (may raise)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[frame]
            width, height = int(page.imagewidth), int(page.imagelength)
            if (width, height) != size:
                check(n_pages, width, height)
            photometric = int(page.photometric)
            extras = tuple(int(value) for value in page.extrasamples)
            icc_tag = page.tags.get(34675)
            icc = icc_tag.value if icc_tag is not None else None  # tag values are read lazily
            orientation_tag = page.tags.get(274)
            orientation = int(orientation_tag.value) if orientation_tag is not None else 1
            array = page.asarray()
            axes = page.axes
    except NeurofiltersError:  # raised by check()
        raise
    except Exception:  # noqa: BLE001 - e.g. zlib.error on truncated strips, codecs tifffile lacks
        return None
    if axes == "SYX":
        array = np.moveaxis(array, 0, 2)
    elif axes == "YX":
        array = array[:, :, None]
    elif axes != "YXS":
        return None
    channels = array.shape[2]
    if not ((photometric == 1 and channels in (1, 2)) or (photometric == 2 and channels in (3, 4))):
        return None
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype not in (np.uint8, np.uint16, np.float32):
        return None
    icc = bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None
    associated = channels in (2, 4) and extras[:1] == (1,)
    return TiffPage(array, n_pages, icc, orientation, associated)
