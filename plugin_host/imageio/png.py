"""16-bit colour PNGs: pixels through libpng (``imagecodecs``), metadata chunks beside it.

Pillow reads 16-bit RGB, RGBA and grey+alpha PNGs at 8 bits and cannot write
them. ``imagecodecs.png_decode`` / ``png_encode`` (libpng) handle them at full
precision, every row filter, interlacing and ``tRNS`` colour keys included,
but take and return pixels only. Hand-written here is what no installed
library does for these files, and nothing more:

- writing: the ``iCCP`` and ``eXIf`` chunks are spliced in after libpng's
  ``IHDR`` (Pillow's ``PngImagePlugin.putchunk`` frames them);
- reading: one pass over the chunk headers before libpng sees the file. It
  refuses a file that ends before ``IEND`` (imagecodecs' in-memory reader
  hands libpng stale bytes when the data runs out at a chunk boundary, so
  truncation must be caught first) or whose image data is too short for its
  declared size (so a hostile header allocates nothing), and it finds the
  ``eXIf`` chunk, which may follow the image data where Pillow does not look
  without decoding. Pillow, which has already opened the file, supplies the
  ICC profile.

Errors are :class:`PngFormatError` with a short reason; the caller
(:mod:`neurofilters.plugin_host.imageio.files`) adds the path and the advice.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, BinaryIO

__all__ = ["PngFormatError", "decode_png", "encode_png", "is_16_bit_colour"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = 33  # signature (8) + IHDR chunk (12 + 13)
#: Samples per pixel of the colour types Pillow reads at 8 bits when they have 16 (grey+alpha, RGB, RGBA).
_CHANNELS = {4: 2, 2: 3, 6: 4}
#: Deflate expands at most 1032-fold, so less image data than raw size / 1032 cannot be complete.
_MAX_DEFLATE_RATIO = 1032


class PngFormatError(ValueError):
    """The bytes are not a well-formed PNG (the message says what is wrong)."""


def is_16_bit_colour(head: bytes) -> bool:
    """Whether a PNG's first 33 bytes declare 16-bit grey+alpha, RGB or RGBA samples."""
    is_png = len(head) >= _IHDR_END and head.startswith(_SIGNATURE) and head[12:16] == b"IHDR"
    return is_png and head[24] == 16 and head[25] in _CHANNELS  # IHDR: bit depth, colour type


def _scan(handle: BinaryIO) -> tuple[int, bytes | None]:
    """Walk the chunk headers to ``IEND``: the image data's size, and the ``eXIf`` body (CRC checked) or None.

    Raises:
        PngFormatError: The file ends before its ``IEND`` chunk.
    """
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    position, idat_bytes, exif = len(_SIGNATURE), 0, None
    while True:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            raise PngFormatError("the file is truncated (it ends before the IEND chunk)")
        length, kind = struct.unpack(">I4s", header)
        position += 12 + length
        if position > size:
            raise PngFormatError(f"the file is truncated (chunk {kind.decode('latin-1')!r} is cut off)")
        if kind == b"IEND":
            return idat_bytes, exif
        if kind == b"IDAT":
            idat_bytes += length
        elif kind == b"eXIf" and exif is None:
            body = handle.read(length)
            if struct.unpack(">I", handle.read(4))[0] == zlib.crc32(kind + body):
                exif = body  # (a damaged ancillary chunk is dropped, as libpng does)


def decode_png(handle: BinaryIO) -> tuple[Any, bytes | None]:
    """Decode a 16-bit grey+alpha, RGB or RGBA PNG at full precision.

    The caller has checked the declared size against its pixel limit.

    Args:
        handle: The open file (read from the start; its position is not kept).

    Returns:
        ``(samples, exif)``: ``H x W x C`` uint16 (a ``tRNS`` colour key
        becomes an alpha channel, 0 where the key matches) and the ``eXIf``
        chunk's bytes (without ``Exif\\0\\0``) or None.

    Raises:
        PngFormatError: The file is truncated or corrupt.
    """
    import imagecodecs

    handle.seek(0)
    head = handle.read(_IHDR_END)
    if not is_16_bit_colour(head):
        raise PngFormatError("it is not a 16-bit grey+alpha, RGB or RGBA PNG")
    width, height = struct.unpack(">II", head[16:24])
    idat_bytes, exif = _scan(handle)
    raw_bytes = height * (1 + width * _CHANNELS[head[25]] * 2)
    if idat_bytes * _MAX_DEFLATE_RATIO < raw_bytes:
        raise PngFormatError(
            f"the image data is truncated ({idat_bytes:,} compressed bytes cannot hold {width} x {height} pixels)"
        )
    handle.seek(0)
    try:
        samples = imagecodecs.png_decode(handle.read())
    except MemoryError:
        raise PngFormatError(f"there is not enough memory to decode its {width} x {height} pixels") from None
    except Exception as error:  # noqa: BLE001 - libpng's errors (PngError, a few odd types) mean damaged data
        reason = str(error).strip() or type(error).__name__
        if "not enough image data" in reason.lower():
            raise PngFormatError(f"the image data is truncated (libpng: {reason})") from None
        raise PngFormatError(f"the file is corrupt (libpng: {reason})") from None
    return samples, exif


def encode_png(samples: Any, *, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """Encode ``H x W x C`` uint8 or uint16 samples (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as a PNG.

    libpng writes the pixels (zlib level 6, its adaptive row filters); the
    ``iCCP`` and ``eXIf`` chunks go right after ``IHDR``. Nothing depends on
    the time, so equal arguments give equal bytes.

    Args:
        samples: The pixels (a 2-D array is grey).
        icc_profile: Written as an ``iCCP`` chunk.
        exif: Written as an ``eXIf`` chunk (a leading ``Exif\\0\\0`` is removed).

    Returns:
        The file's bytes.
    """
    import imagecodecs
    import numpy as np
    from PIL import PngImagePlugin

    array = np.ascontiguousarray(samples)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    encoded = bytes(imagecodecs.png_encode(array, level=6))
    chunks = io.BytesIO()
    if icc_profile:
        PngImagePlugin.putchunk(chunks, b"iCCP", b"ICC profile\x00\x00", zlib.compress(icc_profile, 6))
    if exif:
        PngImagePlugin.putchunk(chunks, b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    return encoded[:_IHDR_END] + chunks.getvalue() + encoded[_IHDR_END:]
