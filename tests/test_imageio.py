"""Image loading and saving (neurofilters.plugin_host.imageio.files) on real files written to tmp_path.

16-bit PNGs are decoded and encoded by libpng (imagecodecs). To check it
independently, PNGs with every row filter and Adam7 interlacing are built here
by a small reference encoder (textbook Paeth formula), and what the project
writes is read back by a textbook reference decoder, with Pillow agreeing on
the high bytes and the metadata.
"""

from __future__ import annotations

import functools
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps

from neurofilters.plugin_host import ImageIOError, ParameterError
from neurofilters.plugin_host.imageio.files import (
    LoadedImage,
    SAVE_FORMATS,
    atomic_write,
    encode_pixels,
    load_image,
    pixels_from_pil,
    save_image,
)
from neurofilters.plugin_host.imageio.png import encode_png

RNG = np.random.default_rng(20240607)
MAKE_TAG, ORIENTATION_TAG = 0x010F, 0x0112


# ----------------------------------------------------------------------------- helpers


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _prediction(rows: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """What PNG filter ``kind`` predicts for each byte of the raw (unfiltered) rows."""
    left = np.zeros(rows.shape, np.int16)
    left[:, bpp:] = rows[:, :-bpp]
    up = np.zeros_like(left)
    up[1:] = rows[:-1]
    corner = np.zeros_like(left)
    corner[1:, bpp:] = rows[:-1, :-bpp]
    if kind == 0:
        return np.zeros_like(left)
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    p = left + up - corner
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - corner)
    return np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))


def _filtered(samples: np.ndarray, kinds: np.ndarray) -> bytes:
    height, width, channels = samples.shape
    bpp = channels * samples.dtype.itemsize
    rows = np.ascontiguousarray(samples, dtype=samples.dtype.newbyteorder(">")).view(np.uint8).reshape(height, width * bpp)
    out = np.empty((height, width * bpp + 1), np.uint8)
    out[:, 0] = kinds
    for kind in range(5):
        mask = kinds == kind
        out[mask, 1:] = ((rows.astype(np.int16) - _prediction(rows, bpp, kind)) % 256)[mask]
    return out.tobytes()


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def reference_png(samples: np.ndarray, kinds_for, *, interlace: bool = False, trns: bytes | None = None) -> bytes:
    """A 16-bit PNG with the given row filters (``kinds_for(n_rows)``), written independently of the codec."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    if interlace:
        parts = []
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                parts.append(_filtered(sub, kinds_for(sub.shape[0])))
        stream = b"".join(parts)
    else:
        stream = _filtered(samples, kinds_for(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 1 if interlace else 0)
    chunks = [_png_chunk(b"IHDR", ihdr)]
    if trns is not None:
        chunks.append(_png_chunk(b"tRNS", trns))
    compressed = zlib.compress(stream, 9)
    middle = len(compressed) // 2  # two IDAT chunks, to exercise joining
    chunks += [_png_chunk(b"IDAT", compressed[:middle]), _png_chunk(b"IDAT", compressed[middle:]), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def reference_decode(data: bytes) -> tuple[np.ndarray, list[bytes], dict[bytes, bytes]]:
    """Textbook decoding of a non-interlaced 8/16-bit PNG, one byte at a time, every CRC checked.

    Returns:
        The samples (``H x W x C``), the chunk types in file order, and the bodies of the other chunks.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, order, bodies, idat = 8, [], {}, b""
    while not order or order[-1] != b"IEND":
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        assert struct.unpack(">I", data[position + 8 + length : position + 12 + length])[0] == zlib.crc32(kind + body)
        order.append(kind)
        position += 12 + length
        if kind == b"IDAT":
            idat += body
        else:
            bodies[kind] = body
    assert position == len(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", bodies[b"IHDR"])
    assert interlace == 0
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    bpp = channels * depth // 8
    stream = zlib.decompress(idat)
    rows = [[0] * (bpp + width * bpp)]  # a zero row above the image; each row starts with bpp zero bytes
    for y in range(height):
        kind, filtered = stream[y * (1 + width * bpp)], stream[y * (1 + width * bpp) + 1 : (y + 1) * (1 + width * bpp)]
        above, row = rows[-1], [0] * bpp
        for x, value in enumerate(filtered):
            a, b, c = row[x], above[x + bpp], above[x]  # left, up, up-left
            predicted = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
            row.append((value + predicted) % 256)
        rows.append(row)
    raw = np.array([row[bpp:] for row in rows[1:]], np.uint8)
    samples = raw.view(">u2").astype(np.uint16) if depth == 16 else raw
    return samples.reshape(height, width, channels), order, bodies


def random16(height: int, width: int, channels: int) -> np.ndarray:
    samples = RNG.integers(0, 65536, (height, width, channels), dtype=np.uint16)
    samples[0, 0, 0] = 12345
    return samples


def as_uint(pixels: np.ndarray, maximum: int) -> np.ndarray:
    return np.rint(pixels * maximum).astype(np.uint16 if maximum > 255 else np.uint8)


@functools.cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (cached: littleCMS stamps each new profile with the current time)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int, make: str = "NeuroCam") -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[MAKE_TAG] = make
    return exif.tobytes()


def noise8(height: int, width: int, channels: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


# ----------------------------------------------------------------------------- import cost


def test_import_does_not_pull_heavy_libraries() -> None:
    code = (
        "import sys, neurofilters.plugin_host.imageio.files; "
        "print(sorted(m for m in ('PIL', 'numpy', 'tifffile', 'imagecodecs', 'keras', 'tensorflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- modes


def _write(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def _palette_image() -> Image.Image:
    image = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], np.uint8)).convert("P")
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (3 * 253))
    return image


def test_grey_rgb_and_alpha_modes_load_exactly(tmp_path: Path) -> None:
    grey, rgb, rgba, grey_alpha = noise8(4, 5, 1), noise8(4, 5, 3), noise8(4, 5, 4), noise8(4, 5, 2)
    cases = {
        "l.png": (Image.fromarray(grey[:, :, 0]), grey),
        "rgb.png": (Image.fromarray(rgb), rgb),
        "rgba.png": (Image.fromarray(rgba), rgba),
        "la.png": (Image.frombytes("LA", (5, 4), grey_alpha.tobytes()), grey_alpha),
        "rgb.tif": (Image.fromarray(rgb), rgb),
        "rgb.bmp": (Image.fromarray(rgb), rgb),
    }
    for name, (image, expected) in cases.items():
        loaded = load_image(_write(tmp_path / name, image))
        assert loaded.pixels.dtype == np.float32 and loaded.pixels.shape == expected.shape, name
        np.testing.assert_array_equal(as_uint(loaded.pixels, 255), expected, err_msg=name)
        assert (loaded.bit_depth, loaded.n_frames, loaded.path) == (8, 1, tmp_path / name)


def test_bilevel_and_palette_modes(tmp_path: Path) -> None:
    bilevel = Image.fromarray(np.array([[True, False, True]])).convert("1")
    loaded = load_image(_write(tmp_path / "one.png", bilevel))
    np.testing.assert_array_equal(loaded.pixels[:, :, 0], [[1.0, 0.0, 1.0]])

    palette = _palette_image()
    loaded = load_image(_write(tmp_path / "p.png", palette))
    assert loaded.pixels.shape == (2, 3, 3)
    np.testing.assert_array_equal(as_uint(loaded.pixels[0, 1], 255), [200, 100, 50])

    for name in ("pt.png", "pt.gif"):
        loaded = load_image(_write(tmp_path / name, palette, transparency=1))
        assert loaded.pixels.shape == (2, 3, 4), name
        np.testing.assert_array_equal(as_uint(loaded.pixels[:, :, 3], 255), [[255, 0, 255], [255, 0, 255]])
        np.testing.assert_array_equal(as_uint(loaded.pixels[0, 0], 255), [10, 20, 30, 255])


def test_colour_keys_become_alpha(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (10, 20, 30)
    loaded = load_image(_write(tmp_path / "key.png", Image.fromarray(rgb), transparency=(10, 20, 30)))
    np.testing.assert_array_equal(loaded.pixels[:, :, 3], [[0, 1], [1, 1]])
    grey = Image.fromarray(np.array([[7, 8]], np.uint8))
    loaded = load_image(_write(tmp_path / "lkey.png", grey, transparency=7))
    np.testing.assert_array_equal(loaded.pixels[:, :, 1], [[0, 1]])
    grey16 = Image.fromarray(np.array([[40000, 12345]], np.uint16))
    loaded = load_image(_write(tmp_path / "key16.png", grey16, transparency=40000))
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.pixels[:, :, 1], [[0, 1]])
    assert as_uint(loaded.pixels[0, 1, 0], 65535) == 12345


def test_cmyk_uses_the_naive_formula_and_drops_the_profile(tmp_path: Path) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 0, 128], [0, 0, 0, 255], [128, 64, 0, 128]]], np.uint8)
    image = Image.frombytes("CMYK", (5, 1), cmyk.tobytes())
    loaded = load_image(_write(tmp_path / "cmyk.tif", image))
    expected = (1 - cmyk[:, :, :3] / 255.0) * (1 - cmyk[:, :, 3:] / 255.0)
    np.testing.assert_allclose(loaded.pixels, expected, atol=1e-6)
    assert loaded.icc_profile is None and loaded.bit_depth == 8

    big = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red, as an Adobe CMYK JPEG
    loaded = load_image(_write(tmp_path / "cmyk.jpg", big, quality=100))
    np.testing.assert_allclose(loaded.pixels[8, 8], [1.0, 0.0, 0.0], atol=0.02)


def test_sixteen_bit_grey_integer_and_float_modes(tmp_path: Path) -> None:
    values = np.array([[0, 1, 12345], [32768, 65534, 65535]], np.uint16)
    for name, image in {
        "g16.png": Image.fromarray(values),  # I;16
        "g16b.tif": Image.fromarray(values).convert("I").convert("I;16B"),
        "i32.tif": Image.fromarray(values.astype(np.int32)),  # I
    }.items():
        path = _write(tmp_path / name, image)
        with Image.open(path) as reopened:
            assert reopened.mode == {"g16.png": "I;16", "g16b.tif": "I;16B", "i32.tif": "I"}[name]
        loaded = load_image(path)
        assert loaded.bit_depth == 16 and loaded.pixels.shape == (2, 3, 1), name
        np.testing.assert_array_equal(as_uint(loaded.pixels[:, :, 0], 65535), values, err_msg=name)

    negative = _write(tmp_path / "neg.tif", Image.fromarray(np.array([[-5, 3]], np.int32)))
    with pytest.raises(ImageIOError, match=r"neg\.tif.*-5 to 3.*outside 0\.\.65535"):
        load_image(negative)

    floats = np.array([[0.25, -0.5, 1.5]], np.float32)
    loaded = load_image(_write(tmp_path / "f.tif", Image.fromarray(floats)))
    assert loaded.bit_depth == 32
    np.testing.assert_array_equal(loaded.pixels[:, :, 0], [[0.25, 0.0, 1.0]])
    nan = _write(tmp_path / "nan.tif", Image.fromarray(np.array([[np.nan, 0.5]], np.float32)))
    with pytest.raises(ImageIOError, match=r"nan\.tif.*NaN"):
        load_image(nan)


def test_ycbcr_lab_and_hsv_become_rgb(tmp_path: Path) -> None:
    loaded = load_image(_write(tmp_path / "ycc.tif", Image.new("YCbCr", (3, 2), (128, 128, 128))))
    np.testing.assert_allclose(loaded.pixels, 128 / 255, atol=1 / 255)
    # Pillow's LAB stores a and b offset by 128: (128, 128, 128) is L* = 50, neutral.
    loaded = load_image(_write(tmp_path / "lab.tif", Image.new("LAB", (3, 2), (128, 128, 128))))
    assert loaded.pixels.shape == (2, 3, 3) and loaded.icc_profile is None
    np.testing.assert_allclose(loaded.pixels, 119 / 255, atol=2 / 255)  # sRGB of L* = 50 grey
    white = load_image(_write(tmp_path / "labw.tif", Image.new("LAB", (3, 2), (255, 128, 128))))
    np.testing.assert_allclose(white.pixels, 1.0, atol=2 / 255)

    pixels, depth, keeps_profile = pixels_from_pil(Image.new("HSV", (2, 2), (0, 255, 255)))
    np.testing.assert_array_equal(pixels[0, 0], [1.0, 0.0, 0.0])
    assert (depth, keeps_profile) == (8, False)


def test_in_memory_only_modes() -> None:
    image = Image.new("PA", (2, 1))
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((1, 0), (1, 128))
    pixels, _, _ = pixels_from_pil(image)
    np.testing.assert_array_equal(as_uint(pixels[0, 1], 255), [10, 200, 30, 128])
    pixels, _, _ = pixels_from_pil(Image.new("RGBX", (1, 1), (1, 2, 3, 4)))
    assert pixels.shape == (1, 1, 3)
    with pytest.raises(ImageIOError, match="pixel mode 'La' is not supported"):
        pixels_from_pil(Image.new("La", (1, 1)))


# ----------------------------------------------------------------------------- 16-bit PNG and TIFF


def test_pillow_keeps_only_the_high_byte_of_16_bit_colour_pngs(tmp_path: Path) -> None:
    """Why the project decodes these itself; if this fails, Pillow has learnt 16-bit colour."""
    samples = random16(3, 4, 3)
    path = tmp_path / "rgb16.png"
    path.write_bytes(reference_png(samples, lambda n: np.zeros(n, np.uint8)))
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), samples >> 8)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_round_trip_is_exact(tmp_path: Path, channels: int) -> None:
    samples = random16(9, 14, channels)
    written = save_image(tmp_path / "out.png", samples.astype(np.float32) / 65535, bit_depth=16)
    assert written.read_bytes()[24] == 16  # IHDR bit depth
    loaded = load_image(written)
    assert loaded.bit_depth == 16 and loaded.pixels.shape == samples.shape
    np.testing.assert_array_equal(as_uint(loaded.pixels, 65535), samples)
    assert as_uint(loaded.pixels, 65535)[0, 0, 0] == 12345
    # A second trip through the loaded image's own precision changes nothing.
    again = save_image(tmp_path / "again.png", loaded.pixels, like=loaded)
    assert again.read_bytes() == written.read_bytes()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_written_here_is_exact_for_an_independent_decoder(tmp_path: Path, tagged_jpeg: LoadedImage, channels: int) -> None:
    samples = random16(12, 17, channels)
    samples[0, :, :] = 65535 - np.arange(17, dtype=np.uint16)[:, None] * 257  # low bytes that differ from the high ones
    colour = channels >= 3
    written = save_image(tmp_path / "out.png", samples, like=tagged_jpeg if colour else None, bit_depth=16)
    decoded, order, bodies = reference_decode(written.read_bytes())
    np.testing.assert_array_equal(decoded, samples)
    expected_order = [b"IHDR", b"iCCP", b"eXIf"] if colour else [b"IHDR"]  # the sRGB profile is not given to grey
    assert order[: len(expected_order)] == expected_order and set(order[len(expected_order) :]) == {b"IDAT", b"IEND"}
    if colour:
        name, profile = bodies[b"iCCP"].split(b"\x00", 1)
        assert name == b"ICC profile" and zlib.decompress(profile[1:]) == srgb_profile()
    with Image.open(written) as image:  # Pillow agrees on the high bytes and reads the metadata
        pillow = np.asarray(image).reshape(12, 17, -1)
        np.testing.assert_array_equal(pillow[:, :, [0, 3]] if channels == 2 else pillow, samples if channels == 1 else samples >> 8)
        if colour:
            assert image.info["icc_profile"] == srgb_profile()
            assert image.getexif()[MAKE_TAG] == "NeuroCam" and image.getexif()[ORIENTATION_TAG] == 1


FILTER_PATTERNS = {
    "mixed": lambda n: RNG.integers(0, 5, n).astype(np.uint8),
    "paeth": lambda n: np.full(n, 4, np.uint8),
    "average": lambda n: np.full(n, 3, np.uint8),
    "sub": lambda n: np.full(n, 1, np.uint8),
    "up": lambda n: np.full(n, 2, np.uint8),
    "none-sub-up": lambda n: RNG.integers(0, 3, n).astype(np.uint8),
}


@pytest.mark.parametrize("pattern", sorted(FILTER_PATTERNS))
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_png_decoder_handles_every_row_filter(tmp_path: Path, pattern: str, channels: int) -> None:
    samples = random16(23, 31, channels)
    path = tmp_path / "filtered.png"
    path.write_bytes(reference_png(samples, FILTER_PATTERNS[pattern]))
    loaded = load_image(path)
    np.testing.assert_array_equal(as_uint(loaded.pixels, 65535), samples)
    with Image.open(path) as image:  # Pillow, independently, agrees on the high bytes
        pillow = np.asarray(image)
    if channels == 2:
        pillow = pillow[:, :, [0, 3]]  # Pillow opens 16-bit grey+alpha as RGBA
    np.testing.assert_array_equal(pillow, samples >> 8)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (11, 13), (40, 37)])
def test_16_bit_png_decoder_handles_adam7_interlacing(tmp_path: Path, shape: tuple[int, int]) -> None:
    samples = random16(*shape, 4)
    path = tmp_path / "interlaced.png"
    path.write_bytes(reference_png(samples, FILTER_PATTERNS["mixed"], interlace=True))
    np.testing.assert_array_equal(as_uint(load_image(path).pixels, 65535), samples)
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), samples >> 8)


def test_16_bit_png_colour_key_becomes_alpha(tmp_path: Path) -> None:
    samples = random16(3, 4, 3)
    samples[1, 2] = (1000, 2000, 3000)
    path = tmp_path / "key.png"
    path.write_bytes(reference_png(samples, FILTER_PATTERNS["mixed"], trns=struct.pack(">3H", 1000, 2000, 3000)))
    loaded = load_image(path)
    expected_alpha = np.ones((3, 4), np.float32)
    expected_alpha[1, 2] = 0
    np.testing.assert_array_equal(loaded.pixels[:, :, 3], expected_alpha)
    np.testing.assert_array_equal(as_uint(loaded.pixels[:, :, :3], 65535), samples)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_tiff_round_trip_is_exact(tmp_path: Path, channels: int) -> None:
    samples = random16(7, 12, channels)
    written = save_image(tmp_path / "out.tif", samples, like=None)  # uint16 input -> 16-bit by default
    loaded = load_image(written)
    assert loaded.bit_depth == 16 and loaded.format == "TIFF"
    np.testing.assert_array_equal(as_uint(loaded.pixels, 65535), samples)
    if channels == 2:
        return  # Pillow cannot open 16-bit grey+alpha TIFFs (load_image falls back to tifffile)
    with Image.open(written) as image:  # Pillow reads the same file (at 8 bits for colour)
        pillow = np.asarray(image).reshape(samples.shape)
        np.testing.assert_array_equal(pillow, samples if channels == 1 else samples >> 8)


def test_tiffs_pillow_cannot_open_are_read_with_tifffile(tmp_path: Path) -> None:
    floats = RNG.random((4, 5, 3)).astype(np.float32) * 1.2
    tifffile.imwrite(tmp_path / "float.tif", floats, photometric="rgb")
    loaded = load_image(tmp_path / "float.tif")
    assert loaded.bit_depth == 32 and loaded.n_frames == 1
    np.testing.assert_array_equal(loaded.pixels, np.clip(floats, 0, 1))
    planar = random16(5, 6, 3)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(planar, 2, 0), planarconfig="separate", photometric="rgb")
    np.testing.assert_array_equal(as_uint(load_image(tmp_path / "planar.tif").pixels, 65535), planar)
    for channels in (2, 4):  # LZW strips: tifffile decodes them with imagecodecs
        lzw = random16(6, 7, channels)
        tifffile.imwrite(tmp_path / f"lzw{channels}.tif", lzw, photometric="minisblack" if channels == 2 else "rgb",
                         extrasamples=("unassalpha",), compression="lzw")
        np.testing.assert_array_equal(as_uint(load_image(tmp_path / f"lzw{channels}.tif").pixels, 65535), lzw)


def test_tiff_written_here_is_deflated_with_unassociated_alpha_and_no_date(tmp_path: Path, tagged_jpeg: LoadedImage) -> None:
    pixels = np.concatenate([tagged_jpeg.pixels, np.full((24, 16, 1), 0.25, np.float32)], axis=2)
    written = save_image(tmp_path / "out.tif", pixels, like=tagged_jpeg, bit_depth=16)
    with tifffile.TiffFile(written) as tif:
        assert len(tif.pages) == 1
        page = tif.pages[0]
        tags = {tag.name: tag.value for tag in page.tags}
        np.testing.assert_array_equal(page.asarray(), encode_pixels(pixels, 16))
    assert tags["Compression"] == tifffile.COMPRESSION.ADOBE_DEFLATE and tags["BitsPerSample"] == (16,) * 4
    assert tags["ExtraSamples"] == (tifffile.EXTRASAMPLE.UNASSALPHA,) and tags["InterColorProfile"] == srgb_profile()
    assert not {"DateTime", "Software", "ImageDescription"} & set(tags)


# ----------------------------------------------------------------------------- orientation and metadata


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif_bytes(6), quality=95)
    loaded = load_image(path)
    assert loaded.pixels.shape == (40, 30, 3)  # orientation 6: turned a quarter clockwise
    with Image.open(path) as image:
        np.testing.assert_array_equal(as_uint(loaded.pixels, 255), np.asarray(ImageOps.exif_transpose(image)))
    assert loaded.pixels[5, :10].mean() > 0.9 and loaded.pixels[35, 20:].mean() < 0.1  # top rows white
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert exif[ORIENTATION_TAG] == 1 and exif[MAKE_TAG] == "NeuroCam"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_orientations_match_pillow(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "o.png"
    Image.fromarray(noise8(5, 7, 3)).save(path, exif=exif_bytes(orientation))
    loaded = load_image(path)
    with Image.open(path) as image:
        np.testing.assert_array_equal(as_uint(loaded.pixels, 255), np.asarray(ImageOps.exif_transpose(image)))


def _chunk_bounds(data: bytes) -> list[tuple[bytes, int, int]]:
    """``(type, start, end)`` of every chunk."""
    position, bounds = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        bounds.append((kind, position, position + 12 + length))
        position += 12 + length
    return bounds


@pytest.mark.parametrize("placement", ["before the image data", "after the image data"])
def test_orientation_applies_to_16_bit_pngs_too(tmp_path: Path, placement: str) -> None:
    samples = random16(5, 7, 3)
    data = encode_png(samples, exif=exif_bytes(6))
    if placement == "after the image data":  # allowed by the PNG spec; Pillow only finds it when it decodes
        (_, start, end), iend = next(b for b in _chunk_bounds(data) if b[0] == b"eXIf"), len(data) - 12
        data = data[:start] + data[end:iend] + data[start:end] + data[iend:]
        assert [kind for kind, *_ in _chunk_bounds(data)][-2:] == [b"eXIf", b"IEND"]
    path = tmp_path / "o16.png"
    path.write_bytes(data)
    loaded = load_image(path)
    np.testing.assert_array_equal(as_uint(loaded.pixels, 65535), np.rot90(samples, -1))
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert exif[ORIENTATION_TAG] == 1 and exif[MAKE_TAG] == "NeuroCam"


@pytest.fixture
def tagged_jpeg(tmp_path: Path) -> LoadedImage:
    path = tmp_path / "tagged.jpg"
    Image.fromarray(noise8(16, 24, 3)).save(path, icc_profile=srgb_profile(), exif=exif_bytes(6))
    return load_image(path)


@pytest.mark.parametrize(("suffix", "depth", "has_exif"), [
    (".png", 8, True), (".png", 16, True), (".jpg", 8, True), (".webp", 8, True), (".tif", 8, False), (".tif", 16, False),
])
def test_icc_and_exif_are_carried_over(tmp_path: Path, tagged_jpeg: LoadedImage, suffix: str, depth: int, has_exif: bool) -> None:
    assert tagged_jpeg.icc_profile == srgb_profile()
    written = save_image(tmp_path / f"out{suffix}", tagged_jpeg.pixels, like=tagged_jpeg, bit_depth=depth)
    with Image.open(written) as image:
        assert image.info.get("icc_profile") == srgb_profile()
        exif = image.getexif()
        if has_exif:
            assert exif[MAKE_TAG] == "NeuroCam" and exif[ORIENTATION_TAG] == 1
    reloaded = load_image(written)
    assert reloaded.pixels.shape == (24, 16, 3)  # not turned a second time
    assert reloaded.icc_profile == srgb_profile()


def test_rgb_profile_is_not_attached_to_grey_output(tmp_path: Path, tagged_jpeg: LoadedImage) -> None:
    written = save_image(tmp_path / "grey.png", tagged_jpeg.pixels[:, :, :1], like=tagged_jpeg)
    with Image.open(written) as image:
        assert "icc_profile" not in image.info


# ----------------------------------------------------------------------------- bad files


def _assert_read_error(path: Path, *fragments: str, **options) -> None:
    with pytest.raises(ImageIOError) as caught:
        load_image(path, **options)
    message = str(caught.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_empty_directory_and_garbage(tmp_path: Path) -> None:
    _assert_read_error(tmp_path / "missing.png", "does not exist")
    _assert_read_error(tmp_path, "is a directory")
    empty = tmp_path / "empty.png"
    empty.touch()
    _assert_read_error(empty, "empty (0 bytes)")
    garbage = tmp_path / "notes.jpg"
    garbage.write_bytes(b"These are my notes, not a picture.\n" * 5)
    _assert_read_error(garbage, "not an image in a format Pillow can read", "b'These are my not", "PNG, JPEG")


def _truncated_copy(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def test_truncated_files_are_errors_not_grey_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(noise8(60, 80, 3)).save(tmp_path / "full.jpg")
    Image.fromarray(noise8(60, 80, 3)).save(tmp_path / "full.png")
    save_image(tmp_path / "full16.png", random16(60, 80, 3), bit_depth=16)
    for name in ("full.jpg", "full.png", "full16.png"):
        truncated = _truncated_copy(tmp_path / name, tmp_path / f"cut-{name}")
        _assert_read_error(truncated, "truncated", "partial image is not loaded", "Re-export")
    for name, samples in (("full16.tif", random16(60, 80, 3)), ("full8.tif", noise8(60, 80, 3)), ("full16la.tif", random16(60, 80, 2))):
        save_image(tmp_path / name, samples)
        _assert_read_error(_truncated_copy(tmp_path / name, tmp_path / f"cut-{name}"), "truncated", "partial image is not loaded")
    # Even when another library switched Pillow to accept truncated files.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    _assert_read_error(tmp_path / "cut-full.jpg", "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


def test_corrupt_data_is_reported(tmp_path: Path) -> None:
    for name, depth in (("c8.png", 8), ("c16.png", 16)):
        path = save_image(tmp_path / name, random16(30, 40, 3), bit_depth=depth)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        _assert_read_error(path, "corrupt")


def test_16_bit_png_cut_at_any_chunk_boundary_is_truncated(tmp_path: Path) -> None:
    """libpng (through imagecodecs) would read stale bytes past the end; the chunk scan refuses such files first."""
    data = save_image(tmp_path / "full.png", random16(60, 80, 3), bit_depth=16).read_bytes()
    bounds = _chunk_bounds(data)
    assert [kind for kind, *_ in bounds].count(b"IDAT") >= 3
    cuts = {end for _, _, end in bounds[:-1]} | {(start + end) // 2 for _, start, end in bounds[1:]}
    first_idat = next(start for kind, start, _ in bounds if kind == b"IDAT")
    for cut in sorted(cuts):
        path = tmp_path / f"cut{cut}.png"
        path.write_bytes(data[:cut])
        _assert_read_error(path, "truncated", *(["partial image is not loaded"] if cut > first_idat else []))


def test_16_bit_png_damaged_behind_valid_crcs_is_corrupt(tmp_path: Path) -> None:
    data = save_image(tmp_path / "full.png", random16(30, 40, 4), bit_depth=16).read_bytes()
    kind, start, end = next(b for b in _chunk_bounds(data) if b[0] == b"IDAT")
    body = bytearray(data[start + 8 : end - 4])
    body[len(body) // 2] ^= 0x55  # the CRC is recomputed: only zlib's own check can notice
    forged = tmp_path / "forged.png"
    forged.write_bytes(data[:start] + _png_chunk(b"IDAT", bytes(body)) + data[end:])
    _assert_read_error(forged, "corrupt", "libpng")


def test_16_bit_png_with_a_hostile_size_allocates_nothing(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 1_000_000, 1_000_000, 16, 6, 0, 0, 0)  # 8 TB of RGBA16 declared
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _png_chunk(b"IEND", b"")
    path = tmp_path / "hostile.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    _assert_read_error(path, "1000000 x 1000000", "limit")
    _assert_read_error(path, "truncated", "cannot hold 1000000 x 1000000 pixels", max_pixels=0)


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims a huge size (its data is a few bytes: never decoded)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decompression_bombs_are_refused_with_the_override_named(tmp_path: Path) -> None:
    bomb = _bomb_png(tmp_path / "bomb.png", 20000, 20000)
    limit = f"{Image.MAX_IMAGE_PIXELS:,}"
    _assert_read_error(bomb, "20000 x 20000 = 400,000,000 pixels", limit, "--max-pixels 400000000", "max_pixels=")
    _assert_read_error(bomb, "limit of 1,000,000 pixels", max_pixels=1_000_000)
    # Raising the limit lets the file through to the decoder, which then finds it truncated.
    _assert_read_error(bomb, "truncated", max_pixels=0)
    with pytest.raises(ParameterError, match="max_pixels"):
        load_image(bomb, max_pixels=-1)


def test_pixel_limit_replaces_pillows_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(noise8(30, 40, 3)).save(path)  # 1,200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(Image.DecompressionBombError):  # Pillow alone refuses more than twice its limit
        Image.open(path)
    _assert_read_error(path, "limit of 500 pixels")  # None = Pillow's current limit
    assert load_image(path, max_pixels=5000).pixels.shape == (30, 40, 3)
    assert load_image(path, max_pixels=0).pixels.shape == (30, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 500


def test_frames_of_animated_images(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 3), (50 * index, 0, 0)) for index in range(3)]
    for name in ("anim.gif", "anim.png"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        loaded = load_image(tmp_path / name, frame=2)
        assert loaded.n_frames == 3
        np.testing.assert_array_equal(as_uint(loaded.pixels[0, 0], 255), [100, 0, 0])
        _assert_read_error(tmp_path / name, "frame 3 does not exist", "has 3 frames", "from 0 to 2", frame=3)
    with pytest.raises(ParameterError, match="frame"):
        load_image(tmp_path / "anim.gif", frame=-1)


# ----------------------------------------------------------------------------- saving


def test_quantisation_is_rounded_and_clipped() -> None:
    values = np.array([0.0, 0.5 / 255 - 1e-4, 0.5 / 255 + 1e-4, 100 / 255, 1.0, 1.7, -0.3], np.float32)
    np.testing.assert_array_equal(encode_pixels(values, 8), [0, 0, 1, 100, 255, 255, 0])
    np.testing.assert_array_equal(encode_pixels(np.array([12345 / 65535]), 16), [12345])
    np.testing.assert_array_equal(encode_pixels(np.array([1, 255], np.uint8), 16), [257, 65535])
    with pytest.raises(ImageIOError, match="1 values are NaN"):
        encode_pixels(np.array([0.5, np.nan]), 8)
    with pytest.raises(ParameterError, match="bit_depth"):
        encode_pixels(values, 12)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_lossless_8_bit_round_trip(tmp_path: Path, suffix: str) -> None:
    samples = noise8(10, 13, 3)
    loaded = load_image(save_image(tmp_path / f"out{suffix}", samples.astype(np.float32) / 255))
    np.testing.assert_array_equal(as_uint(loaded.pixels, 255), samples)


@pytest.mark.parametrize(("suffix", "channels", "expected_channels"), [
    (".png", 2, 2), (".png", 4, 4), (".tif", 2, 2), (".tif", 4, 4), (".webp", 4, 4), (".webp", 2, 4),
    (".jpg", 4, 3), (".jpg", 2, 1), (".bmp", 4, 3), (".bmp", 2, 1),
])
def test_alpha_kept_or_composited_over_white(tmp_path: Path, suffix: str, channels: int, expected_channels: int) -> None:
    pixels = np.zeros((16, 16, channels), np.float32)
    pixels[:, 8:, -1] = 1.0  # right half opaque black, left half fully transparent
    loaded = load_image(save_image(tmp_path / f"out{suffix}", pixels, quality=100))
    assert loaded.pixels.shape[2] == expected_channels
    if expected_channels in (2, 4):
        np.testing.assert_allclose(loaded.pixels[:, :, -1], pixels[:, :, -1], atol=0.02)
    else:
        np.testing.assert_allclose(loaded.pixels[4, 2], 1.0, atol=0.05)  # transparent -> white
        np.testing.assert_allclose(loaded.pixels[4, 13], 0.0, atol=0.05)


def test_webp_writes_grey_as_rgb(tmp_path: Path) -> None:
    loaded = load_image(save_image(tmp_path / "grey.webp", np.full((8, 8), 0.5, np.float32), quality=100))
    assert loaded.pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(loaded.pixels, 0.5, atol=0.02)


@pytest.mark.parametrize(("suffix", "depth"), [
    (".png", 8), (".png", 16), (".jpg", 8), (".jpeg", 8), (".webp", 8), (".tif", 8), (".tiff", 16), (".bmp", 8),
])
def test_output_bytes_are_deterministic(tmp_path: Path, tagged_jpeg: LoadedImage, suffix: str, depth: int) -> None:
    pixels = np.concatenate([tagged_jpeg.pixels, np.full((24, 16, 1), 0.5, np.float32)], axis=2)
    first = save_image(tmp_path / f"a{suffix}", pixels, like=tagged_jpeg, bit_depth=depth).read_bytes()
    second = save_image(tmp_path / f"b{suffix}", pixels.copy(), like=tagged_jpeg, bit_depth=depth).read_bytes()
    assert first == second and len(first) > 100


def test_unknown_suffix_and_16_bits_in_8_bit_formats(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ImageIOError) as caught:
        save_image(tmp_path / "out.gifx", pixels)
    message = str(caught.value)
    assert "out.gifx" in message and "'.gifx'" in message
    assert all(suffix in message for suffix in SAVE_FORMATS)
    with pytest.raises(ImageIOError, match="no suffix"):
        save_image(tmp_path / "out", pixels)
    with pytest.raises(ImageIOError, match=r"out\.jpg.*16 bits.*JPEG stores 8 bits.*\.png or \.tif"):
        save_image(tmp_path / "out.jpg", pixels, bit_depth=16)
    with pytest.raises(ParameterError, match="quality"):
        save_image(tmp_path / "out.jpg", pixels, quality=0)
    with pytest.raises(ImageIOError, match=r"at most 65500 pixels.*70000 x 1"):
        save_image(tmp_path / "wide.jpg", np.zeros((1, 70000), np.float32))
    with pytest.raises(ImageIOError, match=r"shape H x W x C.*\(2, 2, 5\)"):
        save_image(tmp_path / "out.png", np.zeros((2, 2, 5)))
    assert list(tmp_path.iterdir()) == []


def test_default_bit_depth_follows_the_source(tmp_path: Path) -> None:
    source = save_image(tmp_path / "src.png", random16(4, 4, 3), bit_depth=16)
    like = load_image(source)
    assert save_image(tmp_path / "out.png", like.pixels, like=like).read_bytes()[24] == 16
    assert save_image(tmp_path / "out8.png", like.pixels, like=like, bit_depth=8).read_bytes()[24] == 8
    assert load_image(save_image(tmp_path / "out.jpg", like.pixels, like=like)).bit_depth == 8


def test_bad_targets(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ImageIOError, match=r"folder .*nowhere.* does not exist"):
        save_image(tmp_path / "nowhere" / "out.png", pixels)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageIOError, match="is a directory"):
        save_image(tmp_path / "dir.png", pixels)


def test_protected_paths_are_not_overwritten(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(noise8(4, 4, 3)).save(source)
    original = source.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(source)
    os.link(source, tmp_path / "hard.png")
    for target in (source, tmp_path / "sub" / ".." / "photo.png", tmp_path / "link.png", tmp_path / "hard.png"):
        with pytest.raises(ImageIOError, match=r"Refusing to overwrite .*input file.*Choose a different output path"):
            save_image(target, np.zeros((4, 4, 3), np.float32), protect=[source])
    assert source.read_bytes() == original
    # Other outputs are fine, and without protection the input can be replaced on purpose.
    save_image(tmp_path / "result.png", np.zeros((4, 4, 3), np.float32), protect=[source])
    save_image(source, np.zeros((4, 4, 3), np.float32))
    assert source.read_bytes() != original


def test_atomic_write_failure_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.jpg"
    target.write_bytes(b"previous content")
    with pytest.raises(OSError):
        with atomic_write(target) as temporary:
            assert temporary.parent == tmp_path and temporary.exists()
            Image.new("RGB", (1, 70000)).save(temporary, format="JPEG")  # libjpeg fails mid-write
    assert target.read_bytes() == b"previous content"
    assert [path.name for path in tmp_path.iterdir()] == ["out.jpg"]

    fresh = tmp_path / "fresh.png"
    with pytest.raises(RuntimeError):
        with atomic_write(fresh) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("stop")
    assert [path.name for path in tmp_path.iterdir()] == ["out.jpg"]


def test_atomic_write_success_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    save_image(target, np.zeros((3, 3, 3), np.float32))
    assert target.read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]

    reference = tmp_path / "reference"
    reference.write_bytes(b"")  # created with the process umask, like any new file
    new = save_image(tmp_path / "new.png", np.zeros((3, 3, 3), np.float32))
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
