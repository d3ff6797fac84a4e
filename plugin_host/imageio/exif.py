"""EXIF orientation: applying it to pixels and resetting it in the EXIF bytes."""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["EXIF_PREFIX", "ORIENTATION_TAG", "apply_orientation", "normalise_exif", "reset_orientation"]

EXIF_PREFIX = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112


def apply_orientation(pixels: Any, orientation: int) -> Any:
    """Turn ``H x W x C`` pixels so they display upright, as EXIF ``orientation`` asks.

    Matches :func:`PIL.ImageOps.exif_transpose` for values 1-8; other values
    leave the pixels unchanged.

    Args:
        pixels: Array whose first two axes are rows and columns.
        orientation: The EXIF Orientation value.

    Returns:
        A (possibly non-contiguous) view of the turned pixels.
    """
    import numpy as np

    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return np.swapaxes(pixels, 0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.swapaxes(pixels, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def normalise_exif(exif: bytes | None) -> bytes | None:
    """Return EXIF bytes with the ``Exif\\0\\0`` prefix, or ``None`` if there are none."""
    if not exif:
        return None
    if exif.startswith(EXIF_PREFIX):
        return bytes(exif)
    if exif[:4] in (b"II*\x00", b"MM\x00*"):
        return EXIF_PREFIX + bytes(exif)
    return None


def reset_orientation(exif: bytes) -> bytes | None:
    """Set the Orientation tag of IFD0 to 1 (upright), changing nothing else.

    The tag is patched in place, so maker notes and offsets stay valid.

    Args:
        exif: EXIF bytes starting with ``Exif\\0\\0``.

    Returns:
        The patched bytes (unchanged when there is no Orientation tag), or
        ``None`` when the EXIF structure cannot be parsed (carrying it would
        risk a stale orientation).
    """
    data = bytearray(exif)
    base = len(EXIF_PREFIX)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(data[base : base + 2])]
        magic, ifd = struct.unpack_from(order + "HI", data, base + 2)
        if magic != 42:
            return None
        (count,) = struct.unpack_from(order + "H", data, base + ifd)
        for index in range(count):
            entry = base + ifd + 2 + 12 * index
            tag, kind, number = struct.unpack_from(order + "HHI", data, entry)
            if tag == ORIENTATION_TAG:
                if kind != 3 or number != 1:
                    return None
                struct.pack_into(order + "H", data, entry + 8, 1)
                break
    except (KeyError, struct.error):
        return None
    return bytes(data)
