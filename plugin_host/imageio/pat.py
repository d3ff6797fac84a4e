"""GIMP patterns (``.pat``): reading and encoding through ``gimpformats.GimpPatPattern``.

A GIMP pattern is a 24-byte header (header size, version 1, width, height,
bytes per pixel 1-4, magic ``GPAT``), a NUL-terminated UTF-8 name and 8-bit
pixels (grey, grey+alpha, RGB or RGBA). ``gimpformats`` decodes and encodes
that layout; this module maps it to and from the host's pixel arrays, checks
sizes and turns its failures into :class:`ImageIOError` messages. GIMP reads the
name as ``header_size - 24 - 1`` bytes followed by a NUL, so the name written
here is ASCII with a trailing NUL (``gimpformats`` counts characters, not bytes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ImageIOError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PAT_SUFFIX", "decode_pat", "encode_pat", "pattern_name"]

#: File suffix of GIMP patterns (lower case).
PAT_SUFFIX = ".pat"
_HEADER_BYTES = 24
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def pattern_name(path: str | Path) -> str:
    """The name GIMP shows for a pattern written to ``path``: its stem, ASCII only."""
    stem = Path(path).stem
    cleaned = re.sub(r"[^\x20-\x7e]", "_", stem).strip() or "neurofilters"
    return cleaned[:255]


def decode_pat(data: bytes, *, path: str | Path = "<bytes>") -> tuple[np.ndarray, str]:
    """Decode a GIMP pattern.

    Args:
        data: The file's bytes.
        path: Named in error messages.

    Returns:
        ``(pixels, name)``: uint8 ``H x W x C`` (C = 1..4) and the pattern's name.

    Raises:
        ImageIOError: The data is not a valid pattern (bad magic, unsupported
            depth, truncated pixels).
    """
    import numpy as np
    from gimpformats.GimpPatPattern import GimpPatPattern

    if len(data) < _HEADER_BYTES or data[20:24] != b"GPAT":
        raise ImageIOError(
            f"Cannot read image '{path}': it is not a GIMP pattern (no 'GPAT' magic at byte 20). "
            "Give a .pat file saved by GIMP, or rename the file with its real suffix."
        )
    header_size, version, width, height, depth = (int.from_bytes(data[i : i + 4], "big") for i in range(0, 20, 4))
    if depth not in _MODES or width < 1 or height < 1 or header_size < _HEADER_BYTES:
        raise ImageIOError(
            f"Cannot read image '{path}': unsupported GIMP pattern header (version {version}, "
            f"{width} x {height}, {depth} bytes per pixel; expected 1 to 4). Re-export the pattern from GIMP."
        )
    needed = header_size + width * height * depth
    if len(data) < needed:
        raise ImageIOError(
            f"Cannot read image '{path}': the pattern is truncated ({len(data)} bytes, {needed} needed). "
            "Re-export the pattern from GIMP."
        )
    pattern = GimpPatPattern()
    try:
        pattern.decode(bytes(data))
        image = pattern.image  # the decoded pixels as a Pillow image (L, LA, RGB or RGBA)
        raw = image.tobytes() if image is not None else b""
    except Exception as error:  # noqa: BLE001 - any decoder failure is a corrupt file
        raise ImageIOError(f"Cannot read image '{path}': the GIMP pattern is corrupt ({error}). Re-export it from GIMP.") from None
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, depth).copy()
    return pixels, pattern.name.rstrip("\x00")


def encode_pat(samples: Any, name: str) -> bytes:
    """Encode 8-bit pixels as a GIMP pattern.

    Args:
        samples: uint8 ``H x W x C`` with C = 1..4.
        name: The pattern's name (ASCII; see :func:`pattern_name`).

    Returns:
        The file's bytes.

    Raises:
        ImageIOError: The pixels are not 8-bit with 1 to 4 channels.
    """
    import numpy as np
    from gimpformats.GimpPatPattern import GimpPatPattern
    from PIL import Image

    array = np.asarray(samples)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in _MODES:
        raise ImageIOError(
            f"GIMP patterns store 8-bit pixels with 1 to 4 channels. Received: dtype={array.dtype}, shape={array.shape}."
        )
    height, width, channels = array.shape
    pattern = GimpPatPattern()
    pattern.name = name.encode("ascii", "replace").decode("ascii") + "\x00"
    pattern.width, pattern.height = width, height
    pattern.image = Image.frombytes(_MODES[channels], (width, height), np.ascontiguousarray(array).tobytes())
    return bytes(pattern.encode())
