"""A small PNG codec for what Pillow cannot do: 16-bit colour PNGs.

Pillow opens 16-bit RGB, RGBA and grey+alpha PNGs but keeps only the high
byte of every sample, and it cannot write them at all. This module reads such
files at full precision (all five row filters, Adam7 interlacing, ``tRNS``
colour keys, chunk CRCs checked) and writes 8- or 16-bit PNGs of any channel
count with ``iCCP`` and ``eXIf`` chunks.

Errors are raised as :class:`PngFormatError` with a short reason; the caller
(:mod:`neurofilters.plugin_host.imageio.files`) adds the path and the advice.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

__all__ = ["DecodedPng", "PngFormatError", "PngHeader", "read_png_header", "decode_png", "encode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each PNG colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_COLOUR_TYPE_OF_CHANNELS = {1: 0, 2: 4, 3: 2, 4: 6}
#: Adam7 passes as (x0, y0, dx, dy).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_IDAT_CHUNK_SIZE = 1 << 20
_MAX_PROFILE_BYTES = 1 << 26


class PngFormatError(ValueError):
    """The bytes are not a well-formed PNG (the message says what is wrong)."""


class DecodedPng:
    """A decoded PNG.

    Attributes:
        samples: ``H x W x C`` uint8 or uint16.
        header: The ``IHDR`` fields.
        icc_profile: The ``iCCP`` profile, if any.
        exif: The ``eXIf`` chunk's bytes (without ``Exif\\0\\0``), if any.
    """

    def __init__(self, samples: Any, header: PngHeader, icc_profile: bytes | None, exif: bytes | None) -> None:
        self.samples = samples
        self.header = header
        self.icc_profile = icc_profile
        self.exif = exif


class PngHeader:
    """The fields of a PNG's ``IHDR`` chunk.

    Attributes:
        width: Pixels per row.
        height: Rows.
        bit_depth: Bits per sample (1, 2, 4, 8 or 16).
        colour_type: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
        interlace: 0 none, 1 Adam7.
    """

    def __init__(self, width: int, height: int, bit_depth: int, colour_type: int, interlace: int) -> None:
        self.width = width
        self.height = height
        self.bit_depth = bit_depth
        self.colour_type = colour_type
        self.interlace = interlace

    @property
    def channels(self) -> int:
        """Samples per pixel."""
        return _CHANNELS[self.colour_type]


def read_png_header(head: bytes) -> PngHeader | None:
    """Parse the ``IHDR`` from the first 33 bytes of a file.

    Args:
        head: At least the first 33 bytes of the file.

    Returns:
        The header, or ``None`` if ``head`` does not start like a PNG.
    """
    if len(head) < 33 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if colour not in _CHANNELS:
        return None
    return PngHeader(width, height, depth, colour, interlace)


def _chunks(data: bytes) -> dict[str, Any]:
    """Walk the chunks, check their CRCs and collect what decoding needs."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngFormatError("it does not start with the PNG signature")
    position = len(PNG_SIGNATURE)
    header: PngHeader | None = None
    idat: list[bytes] = []
    trns: bytes | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    seen_iend = False
    while position < len(data):
        if position + 8 > len(data):
            raise PngFormatError("the file is truncated (a chunk header is cut off)")
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            raise PngFormatError(f"the file is truncated (chunk {kind.decode('latin-1')!r} is cut off)")
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : end])
        if zlib.crc32(kind + body) != crc:
            raise PngFormatError(f"the file is corrupt (CRC mismatch in chunk {kind.decode('latin-1')!r})")
        position = end
        if kind == b"IHDR":
            if length != 13:
                raise PngFormatError("the file is corrupt (IHDR chunk has the wrong length)")
            width, height, depth, colour, compression, filter_method, interlace = struct.unpack(">IIBBBBB", body)
            if colour not in _CHANNELS or compression != 0 or filter_method != 0 or interlace not in (0, 1):
                raise PngFormatError("the file is corrupt (invalid IHDR fields)")
            if width == 0 or height == 0:
                raise PngFormatError("the file is corrupt (zero width or height)")
            header = PngHeader(width, height, depth, colour, interlace)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = body
        elif kind == b"iCCP":
            icc_profile = _inflate_profile(body)
        elif kind == b"eXIf":
            exif = body
        elif kind == b"IEND":
            seen_iend = True
            break
        elif kind[0] & 0x20 == 0 and kind not in (b"PLTE",):
            raise PngFormatError(f"it has an unknown critical chunk {kind.decode('latin-1')!r}")
    if header is None:
        raise PngFormatError("the file is corrupt (no IHDR chunk)")
    if not idat:
        raise PngFormatError("the file is truncated (no image data)")
    if not seen_iend:
        raise PngFormatError("the file is truncated (no IEND chunk)")
    return {"header": header, "idat": b"".join(idat), "trns": trns, "icc_profile": icc_profile, "exif": exif}


def _inflate_profile(body: bytes) -> bytes | None:
    """The ICC profile of an ``iCCP`` chunk (name, NUL, method 0, zlib data), or None if unreadable."""
    name_end = body.find(b"\x00")
    if name_end < 1 or name_end + 2 > len(body) or body[name_end + 1] != 0:
        return None
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(body[name_end + 2 :], _MAX_PROFILE_BYTES)
    except zlib.error:
        return None
    return profile if inflater.eof and profile else None


def _unfilter(raw: Any, height: int, width: int, bpp: int) -> Any:
    """Undo the per-row PNG filters of one (sub-)image.

    Args:
        raw: uint8 array of ``height * (1 + width * bpp)`` bytes (filter byte + row).
        height: Rows.
        width: Pixels per row.
        bpp: Bytes per pixel (filters work on bytes ``bpp`` apart).

    Returns:
        uint8 array ``height x width x bpp``.
    """
    import numpy as np

    rows = raw.reshape(height, 1 + width * bpp)
    kinds = rows[:, 0].copy()
    if kinds.max(initial=0) > 4:
        bad = int(np.argmax(kinds > 4))
        raise PngFormatError(f"the file is corrupt (row {bad} has unknown filter type {int(kinds[bad])})")
    filtered = rows[:, 1:].reshape(height, width, bpp)
    if not np.any(kinds >= 3):
        return _unfilter_simple(filtered, kinds)
    return _unfilter_wavefront(filtered, kinds)


def _unfilter_simple(filtered: Any, kinds: Any) -> Any:
    """Rows that use only None (0), Sub (1) and Up (2): whole-array operations."""
    import numpy as np

    out = filtered.copy()
    sub = kinds == 1
    if sub.any():
        # Sub is a running sum along the row, modulo 256: uint8 cumsum wraps exactly.
        out[sub] = np.cumsum(filtered[sub], axis=1, dtype=np.uint8)
    up_rows = np.flatnonzero(kinds == 2)
    if up_rows.size:
        # Each run of consecutive Up rows is a running sum down the columns,
        # started from the (already final) row above the run.
        breaks = np.flatnonzero(np.diff(up_rows) != 1) + 1
        for run in np.split(up_rows, breaks):
            first, last = int(run[0]), int(run[-1]) + 1
            block = np.cumsum(filtered[first:last], axis=0, dtype=np.uint8)
            if first > 0:
                block += out[first - 1]
            out[first:last] = block
    return out


def _unfilter_wavefront(filtered: Any, kinds: Any) -> Any:
    """All five filters, one anti-diagonal of pixels per step.

    Pixel (i, j) depends on (i, j-1), (i-1, j) and (i-1, j-1), so every pixel
    on the diagonal i + j = d depends only on diagonals d-1 and d-2: each
    diagonal is computed with vectorised operations, ``height + width - 1``
    steps in all. The image is stored with a zero row above and a zero column
    to its left, so diagonals and their neighbours are plain strided slices of
    the flattened array (no gathers, no edge cases).
    """
    import numpy as np

    height, width, bpp = filtered.shape
    stride = width + 1  # padded row length, in pixels
    padded = np.zeros(((height + 1) * stride, bpp), dtype=np.uint8)
    source = np.zeros_like(padded)
    source.reshape(height + 1, stride, bpp)[1:, 1:] = filtered
    kind_masks = [(kinds == k)[:, None] for k in range(5)]
    counts = [np.concatenate([[0], np.cumsum(kinds == k)]) for k in range(5)]
    for d in range(height + width - 1):
        lo = max(0, d - width + 1)
        hi = min(height, d + 1)
        n = hi - lo
        # Padded flat index of pixel (i, j = d - i) is (i + 1) * stride + j + 1 = d + stride + 1 + i * width.
        start = d + stride + 1 + lo * width
        here = slice(start, start + (n - 1) * width + 1, width)
        left = slice(start - 1, start - 1 + (n - 1) * width + 1, width)
        above = slice(start - stride, start - stride + (n - 1) * width + 1, width)
        corner = slice(start - stride - 1, start - stride - 1 + (n - 1) * width + 1, width)
        present = [counts[k][hi] - counts[k][lo] for k in range(5)]
        if present[0] == n:
            padded[here] = source[here]
            continue
        if present[1] == n:
            np.add(source[here], padded[left], out=padded[here])
            continue
        if present[2] == n:
            np.add(source[here], padded[above], out=padded[here])
            continue
        a = padded[left].astype(np.int16)
        b = padded[above].astype(np.int16)
        prediction = np.zeros_like(a)
        if present[4]:
            c = padded[corner].astype(np.int16)
            b_minus_c = b - c
            a_minus_c = a - c
            pa = np.abs(b_minus_c)
            pb = np.abs(a_minus_c)
            pc = np.abs(b_minus_c + a_minus_c)
            paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
            if present[4] == n:
                prediction = paeth
            else:
                prediction = np.where(kind_masks[4][lo:hi], paeth, prediction)
        if present[3]:
            average = (a + b) >> 1
            prediction = average if present[3] == n else np.where(kind_masks[3][lo:hi], average, prediction)
        if present[1]:
            prediction = np.where(kind_masks[1][lo:hi], a, prediction)
        if present[2]:
            prediction = np.where(kind_masks[2][lo:hi], b, prediction)
        np.add(source[here], prediction.astype(np.uint8), out=padded[here])
    return padded.reshape(height + 1, stride, bpp)[1:, 1:]


def decode_png(data: bytes, *, max_pixels: int | None = None) -> DecodedPng:
    """Decode a non-palette PNG of bit depth 8 or 16 at full precision.

    Args:
        data: The whole file.
        max_pixels: Refuse images with more pixels than this (``None``: no limit).

    Returns:
        The samples (``H x W x C`` uint16 for 16-bit files, uint8 for 8-bit
        ones, C = 1, 2, 3 or 4; a ``tRNS`` colour key adds an alpha channel,
        0 where the key matches and the maximum elsewhere) and the metadata.

    Raises:
        PngFormatError: The data is not a well-formed PNG of a supported kind.
    """
    import numpy as np

    parts = _chunks(data)
    header: PngHeader = parts["header"]
    if header.colour_type == 3 or header.bit_depth not in (8, 16):
        raise PngFormatError(
            f"decode_png reads 8- and 16-bit non-palette PNGs; this one has colour type "
            f"{header.colour_type} at {header.bit_depth} bits"
        )
    width, height, channels = header.width, header.height, header.channels
    if max_pixels and width * height > max_pixels:
        raise PngFormatError(f"it has {width * height} pixels, more than the limit of {max_pixels}")
    sample_bytes = header.bit_depth // 8
    bpp = channels * sample_bytes
    if header.interlace:
        passes = []
        for x0, y0, dx, dy in _ADAM7:
            pass_width = (width - x0 + dx - 1) // dx if width > x0 else 0
            pass_height = (height - y0 + dy - 1) // dy if height > y0 else 0
            passes.append((x0, y0, dx, dy, pass_width, pass_height))
        expected = sum(h * (1 + w * bpp) for *_, w, h in passes if w and h)
    else:
        expected = height * (1 + width * bpp)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(parts["idat"], expected)
        if inflater.unconsumed_tail:
            # Read on to the stream's end so zlib verifies its Adler-32 checksum
            # (extra decompressed bytes, which some encoders leave, are ignored).
            inflater.decompress(inflater.unconsumed_tail, 1 << 16)
    except zlib.error as error:
        raise PngFormatError(f"the image data is corrupt (zlib: {error})") from None
    if len(raw) < expected:
        raise PngFormatError(
            f"the image data is truncated ({len(raw)} of {expected} bytes after decompression)"
        )
    buffer = np.frombuffer(raw, dtype=np.uint8)
    if header.interlace:
        image = np.empty((height, width, bpp), dtype=np.uint8)
        offset = 0
        for x0, y0, dx, dy, pass_width, pass_height in passes:
            if not pass_width or not pass_height:
                continue
            size = pass_height * (1 + pass_width * bpp)
            image[y0::dy, x0::dx] = _unfilter(buffer[offset : offset + size], pass_height, pass_width, bpp)
            offset += size
    else:
        image = _unfilter(buffer, height, width, bpp)
    if sample_bytes == 2:
        samples = image.reshape(height, width * bpp).view(">u2").astype(np.uint16).reshape(height, width, channels)
    else:
        samples = image.reshape(height, width, channels)
    trns = parts["trns"]
    if trns is not None and header.colour_type in (0, 2):
        if len(trns) != 2 * channels:
            raise PngFormatError("the file is corrupt (tRNS chunk has the wrong length)")
        key = np.array(struct.unpack(f">{channels}H", trns), dtype=np.uint32)
        maximum = (1 << header.bit_depth) - 1
        opaque = np.any(samples != (key & maximum).astype(samples.dtype), axis=2)
        alpha = (opaque * maximum).astype(samples.dtype)
        samples = np.concatenate([samples, alpha[:, :, None]], axis=2)
    return DecodedPng(samples, header, parts["icc_profile"], parts["exif"])


def _choose_filters(rows: Any, bpp: int) -> tuple[Any, Any]:
    """Filter each row with None, Sub or Up, whichever has the smallest sum of |signed bytes|.

    (libpng's heuristic, restricted to the filters that decode without a
    per-pixel dependency, so files written here also load fast.)

    Returns:
        ``(kinds, filtered)``: the filter type per row and the filtered rows.
    """
    import numpy as np

    sub = rows.copy()
    sub[:, bpp:] -= rows[:, :-bpp]  # uint8 arithmetic wraps as PNG requires
    up = rows.copy()
    up[1:] -= rows[:-1]
    magnitude = np.minimum(np.arange(256), 256 - np.arange(256)).astype(np.uint8)  # |byte as int8|
    scores = np.stack([magnitude[candidate].sum(axis=1, dtype=np.uint64) for candidate in (rows, sub, up)])
    kinds = np.argmin(scores, axis=0)  # ties go to the lowest filter number
    filtered = np.where((kinds == 1)[:, None], sub, np.where((kinds == 2)[:, None], up, rows))
    return kinds.astype(np.uint8), filtered


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))



def integer_samples(samples: Any) -> Any:
    """Check and shape encoder input: uint8/uint16 ``H x W x C`` with C in 1..4 (2-D means grey).

    Raises:
        ValueError: ``samples`` has an unsupported shape or dtype.
    """
    import numpy as np

    array = np.asarray(samples)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise ValueError(f"Expected H x W x C samples with C in 1..4. Received: shape={array.shape}")
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"Expected uint8 or uint16 samples. Received: dtype={array.dtype}")
    return array

def encode_png(
    samples: Any,
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    compress_level: int = 6,
) -> bytes:
    """Encode an 8- or 16-bit image as a PNG.

    The output depends only on the arguments (no timestamps), so equal
    pixels give equal bytes.

    Args:
        samples: ``H x W x C`` (or ``H x W``) uint8 or uint16, C = 1 grey,
            2 grey+alpha, 3 RGB, 4 RGBA.
        icc_profile: Written as an ``iCCP`` chunk.
        exif: Written as an ``eXIf`` chunk (a leading ``Exif\\0\\0`` is removed).
        compress_level: zlib level 0-9.

    Returns:
        The file's bytes.

    Raises:
        ValueError: ``samples`` has an unsupported shape or dtype.
    """
    import numpy as np

    array = integer_samples(samples)
    depth = array.dtype.itemsize * 8
    height, width, channels = array.shape
    bpp = channels * depth // 8
    rows = np.ascontiguousarray(array, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(height, width * bpp)
    kinds, filtered = _choose_filters(rows, bpp)
    stream = np.concatenate([kinds[:, None], filtered], axis=1)
    compressed = zlib.compress(stream.tobytes(), compress_level)
    parts = [
        PNG_SIGNATURE,
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPE_OF_CHANNELS[channels], 0, 0, 0)),
    ]
    if icc_profile:
        parts.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile, compress_level)))
    if exif:
        parts.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    for start in range(0, len(compressed), _IDAT_CHUNK_SIZE):
        parts.append(_chunk(b"IDAT", compressed[start : start + _IDAT_CHUNK_SIZE]))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)
