"""Loading and saving images for the CLI, the batch runner and the GIMP worker.

Everything is read into one representation, :class:`LoadedImage`: float32
``H x W x C`` pixels in [0, 1] (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA),
upright (EXIF orientation applied), with the source's precision, ICC profile
and EXIF kept so :func:`save_image` can write a result "like" its input.

Pillow does the work, except where it loses precision or cannot write:
16-bit grey+alpha, RGB and RGBA PNGs (Pillow keeps only the high byte) are
decoded and encoded by libpng through :mod:`.png`; 16-bit colour TIFFs and
TIFF layouts Pillow cannot open at all (16-bit grey+alpha, float RGB) are
read, and every TIFF is written, with ``tifffile`` through :mod:`.tiff`.

Importing this module is cheap: Pillow and NumPy are imported by the
functions that need them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.call import image_array
from ..core.errors import ImageIOError, NeurofiltersError, ParameterError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "LoadedImage",
    "ProtectedFiles",
    "SAVE_FORMATS",
    "atomic_write",
    "check_pixel_limit",
    "encode_pixels",
    "format_for_path",
    "load_image",
    "pixels_from_pil",
    "save_image",
]

#: Output suffix (lower case) -> Pillow format name.
SAVE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".pat": "PAT",  # GIMP pattern (plugin_host/imageio/pat.py)
}
#: Formats that store 16 bits per channel.
HIGH_DEPTH_FORMATS = frozenset({"PNG", "TIFF"})
_ICC_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})
_EXIF_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
#: Formats written without alpha: transparent areas are composited over white.
#: (Pillow writes RGBA BMPs as 32-bit BI_RGB, which readers, Pillow included, take as opaque.)
_NO_ALPHA_FORMATS = frozenset({"JPEG", "BMP"})
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383, "PAT": 10000}
_JPEG_MAX_EXIF = 65533  # one APP1 segment
_MODES_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_SUPPORTED_MODES = "1, L, P, LA, PA, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV, I;16, I;16L, I;16B, I, F"
_REEXPORT = "Re-export or re-download the image."

#: Suffixes of the flat image files :func:`load_image` reads, for commands that
#: scan folders (the batch runner adds ``.xcf``, which it reads layer by layer).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".tif", ".tiff", ".bmp", ".gif"})

# Pillow's decompression-bomb limit and truncated-file switch are module globals;
# load_image sets them for the duration of a load, under this lock.
_PILLOW_GLOBALS_LOCK = threading.RLock()


@dataclass
class LoadedImage:
    """An image read by :func:`load_image`.

    Attributes:
        pixels: float32 ``H x W x C`` in [0, 1]; C = 1 (grey), 2 (grey+alpha),
            3 (RGB) or 4 (RGBA). EXIF orientation is already applied.
        bit_depth: Precision of the source: 8, 16, or 32 for float sources.
        icc_profile: The embedded ICC profile, or ``None`` (also ``None`` when
            the pixels were converted from another colour space, e.g. CMYK).
        exif: EXIF bytes (starting ``Exif\\0\\0``) with Orientation reset to 1,
            or ``None``.
        format: Pillow's format name (``"PNG"``, ``"JPEG"``, ...).
        n_frames: Number of frames (pages) in the file.
        path: The file read, or ``None``.
    """

    pixels: np.ndarray
    bit_depth: int
    icc_profile: bytes | None
    exif: bytes | None
    format: str
    n_frames: int
    path: Path | None

    @property
    def height(self) -> int:
        """Rows."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns."""
        return int(self.pixels.shape[1])

    @property
    def has_alpha(self) -> bool:
        """Whether the last channel is alpha (C = 2 or 4)."""
        return self.pixels.shape[2] in (2, 4)


# --------------------------------------------------------------------------- loading


def _read_error(path: Path, problem: str, advice: str = _REEXPORT) -> ImageIOError:
    return ImageIOError(f"Cannot read image '{path}': {problem}. {advice}".rstrip())


def _pixel_limit(max_pixels: int | None) -> int | None:
    """The effective limit: ``None`` means Pillow's current default, 0 means none."""
    if max_pixels is None:
        from PIL import Image

        return Image.MAX_IMAGE_PIXELS or None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise ParameterError(
            f'"max_pixels" must be an integer >= 0 (0 = no limit). Received: max_pixels={max_pixels!r}',
            param="max_pixels",
            value=max_pixels,
        )
    return max_pixels or None


@contextlib.contextmanager
def _pillow_guard() -> Iterator[None]:
    """Set up Pillow for one load, under a lock (these are process-wide settings).

    Pillow's own decompression-bomb check is disabled (ours replaces it, with
    an adjustable limit), truncated files are errors whatever
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` says elsewhere, and the warnings
    Pillow, tifffile and imagecodecs (libpng) emit about damaged files are
    silenced: every problem that matters ends as one ImageIOError with a
    plain explanation.
    """
    import logging
    import warnings

    from PIL import Image, ImageFile

    with _PILLOW_GLOBALS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(name) for name in ("tifffile", "imagecodecs")]
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, [logger.disabled for logger in loggers]
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
        for logger in loggers:
            logger.disabled = True
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved[:2]
            for logger, disabled in zip(loggers, saved[2]):
                logger.disabled = disabled


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_size(path: Path, size: tuple[int, int], limit: int | None) -> None:
    width, height = size
    if limit is not None and width * height > limit:
        raise _read_error(
            path,
            f"it has {width} x {height} = {width * height:,} pixels, more than the limit of {limit:,} "
            "pixels that guards against decompression bombs",
            f"If you trust the file, raise the limit (--max-pixels {width * height} on the command line, "
            f"load_image(..., max_pixels={width * height}) in Python; 0 disables the check).",
        )


def check_pixel_limit(path: str | os.PathLike[str], width: int, height: int, max_pixels: int | None = None) -> None:
    """Refuse a ``width x height`` image beyond the pixel limit, before anything is allocated.

    The same check and message as :func:`load_image`'s, for readers of other
    formats (XCF canvases and layers).

    Args:
        path: What is being read, as named in the message (a file, or a file and its layer).
        width: Columns.
        height: Rows.
        max_pixels: ``None`` for Pillow's ``Image.MAX_IMAGE_PIXELS``, 0 for no limit.

    Raises:
        ImageIOError: Too many pixels (the message says how to raise the limit).
        ParameterError: ``max_pixels`` is not an integer >= 0.
    """
    _check_size(Path(path), (int(width), int(height)), _pixel_limit(max_pixels))


def _check_frame(path: Path, frame: int, n_frames: int) -> None:
    if frame >= n_frames:
        raise _read_error(
            path,
            f"frame {frame} does not exist: the file has {n_frames} frame{'s' if n_frames != 1 else ''}",
            f"Choose a frame from 0 to {n_frames - 1}.",
        )


def load_image(path: str | os.PathLike[str], *, frame: int = 0, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file into float32 pixels in [0, 1].

    Modes are mapped as follows: 1, L -> grey; LA -> grey+alpha; P, PA ->
    RGB, or RGBA when the palette has transparency; a ``tRNS`` colour key
    adds alpha; RGBa/RGBX -> RGBA/RGB; CMYK -> RGB by the naive formula
    ``(1 - c) * (1 - k)`` (an embedded CMYK profile is not applied and is
    dropped); YCbCr, HSV -> RGB; LAB -> sRGB through littleCMS; I;16* ->
    grey at 16-bit precision (value / 65535); I -> like I;16 when all values
    are in 0..65535; F -> grey, clipped to [0, 1]. 16-bit colour PNGs and
    (with ``tifffile`` installed) TIFFs keep all 16 bits.

    Args:
        path: The file.
        frame: Frame (page) of an animated or multi-page file, from 0.
        max_pixels: Largest accepted width x height; ``None`` uses Pillow's
            ``Image.MAX_IMAGE_PIXELS`` (about 89 million), 0 disables the
            check. Protects against decompression bombs.

    Returns:
        The pixels and what :func:`save_image` needs to write a similar file.

    Raises:
        ImageIOError: The file is missing, empty, truncated, corrupt, not an
            image, too large, has no such frame, or has an unsupported mode.
        ParameterError: ``frame`` or ``max_pixels`` is not a valid number.
    """
    from PIL import Image, UnidentifiedImageError

    file_path = Path(path)
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise ParameterError(f'"frame" must be an integer >= 0. Received: frame={frame!r}', param="frame", value=frame)
    limit = _pixel_limit(max_pixels)
    try:
        size = file_path.stat().st_size
    except FileNotFoundError:
        raise _read_error(file_path, "the file does not exist", "Check the path.") from None
    except OSError as error:
        raise _read_error(file_path, f"it cannot be accessed ({error.strerror})", "Check the path and its permissions.") from None
    if file_path.is_dir():
        raise _read_error(file_path, "it is a directory, not a file", "Give the path of an image file.")
    if size == 0:
        raise _read_error(file_path, "the file is empty (0 bytes)")
    if file_path.suffix.lower() == ".pat":
        return _load_pat(file_path, limit)

    try:
        handle = open(file_path, "rb")  # noqa: SIM115 - closed below, Pillow reads it lazily
    except OSError as error:
        raise _read_error(file_path, f"it cannot be opened ({error.strerror})", "Check its permissions.") from None
    with handle, _pillow_guard():
        try:
            image = Image.open(handle)
        except UnidentifiedImageError:
            handle.seek(0)
            head = handle.read(16)
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                loaded = _load_tiff_without_pillow(file_path, frame, limit)
                if loaded is not None:
                    return loaded
                raise _read_error(
                    file_path,
                    "it starts like a TIFF, but neither Pillow nor tifffile can read it: it may be truncated "
                    "or corrupt (TIFFs often keep their directory at the end), or use an unsupported layout",
                ) from None
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                raise _read_error(
                    file_path, "it is not an image Pillow can read: it starts like a PNG, but its header is truncated or corrupt"
                ) from None
            raise _read_error(
                file_path,
                f"it is not an image in a format Pillow can read (it starts with {head!r})",
                "Supported formats include PNG, JPEG, WebP, TIFF, BMP and GIF.",
            ) from None
        except Exception as error:  # noqa: BLE001 - any failure here is a bad file header
            raise _read_error(file_path, f"its header is corrupt ({_describe(error)})") from None
        with image:
            return _load_opened(image, handle, file_path, frame, limit)


def _load_opened(image: Image.Image, handle: Any, path: Path, frame: int, limit: int | None) -> LoadedImage:
    import numpy as np

    from .exif import apply_orientation, normalise_exif, reset_orientation

    try:
        n_frames = int(getattr(image, "n_frames", 1))
        _check_frame(path, frame, n_frames)
        if frame:
            image.seek(frame)
    except ImageIOError:
        raise
    except Exception as error:  # noqa: BLE001
        raise _read_error(path, f"its frames cannot be read ({_describe(error)})") from None
    _check_size(path, image.size, limit)
    file_format = image.format or "unknown"

    decoded = _decode_high_depth(image, handle, path, frame, n_frames)
    if decoded is not None:
        pixels, bit_depth, icc_profile, raw_exif = decoded
    else:
        try:
            image.load()
        except Exception as error:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError, ...
            text = str(error)
            if "truncated" in text or isinstance(error, EOFError):
                raise _read_error(path, f"the file is truncated ({_describe(error)}); a partial image is not loaded") from None
            if file_format == "TIFF":  # libtiff says "decoder error" for strips cut off too
                from .tiff import check_complete

                _tiff_call(path, check_complete, path, frame)
            raise _read_error(path, f"the image data is corrupt ({_describe(error)})") from None
        pixels, bit_depth, keeps_profile = pixels_from_pil(image, path=path)
        icc_profile = (image.info.get("icc_profile") or None) if keeps_profile else None
        raw_exif = image.info.get("exif")

    exif = normalise_exif(raw_exif if isinstance(raw_exif, bytes) else None)
    # (Asking Pillow for a PNG's EXIF would make it decode the whole image again.)
    orientation = _orientation(image, exif, ask_pillow=decoded is None or file_format != "PNG")
    if orientation != 1:
        pixels = apply_orientation(pixels, orientation)
    if exif is not None:
        exif = reset_orientation(exif)
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        bit_depth=bit_depth,
        icc_profile=icc_profile,
        exif=exif,
        format=file_format,
        n_frames=n_frames,
        path=path,
    )


def _tiff_call(path: Path, function: Callable[..., Any], *args: Any) -> Any:
    """Call a :mod:`.tiff` reader, turning its ``TiffFormatError`` into the ImageIOError users see."""
    from .tiff import TiffFormatError

    try:
        return function(*args)
    except TiffFormatError as error:
        raise _read_error(path, f"{error}; a partial image is not loaded") from None


def _load_pat(path: Path, limit: int | None) -> LoadedImage:
    """Read a GIMP pattern (:mod:`.pat`) as an 8-bit image."""
    from .pat import decode_pat

    try:
        data = path.read_bytes()
    except OSError as error:
        raise _read_error(path, f"it cannot be opened ({error.strerror})", "Check its permissions.") from None
    samples, _ = decode_pat(data, path=path)
    _check_size(path, (samples.shape[1], samples.shape[0]), limit)
    return LoadedImage(samples.astype("float32") / 255.0, 8, None, None, "PAT", 1, path)


def _load_tiff_without_pillow(path: Path, frame: int, limit: int | None) -> LoadedImage | None:
    """TIFF layouts Pillow cannot open (e.g. 16-bit grey+alpha), read with ``tifffile`` if installed."""
    import numpy as np

    from .exif import apply_orientation
    from .tiff import read_tiff_page

    def check(n_pages: int, width: int, height: int) -> None:
        _check_frame(path, frame, n_pages)
        _check_size(path, (width, height), limit)

    page = _tiff_call(path, read_tiff_page, path, frame, check)
    if page is None:
        return None
    samples = page.samples
    if samples.dtype == np.float32:
        if not np.all(np.isfinite(samples)):
            raise _read_error(path, "it contains NaN or infinite float pixels", "Replace them in the program that made the file.")
        pixels, bit_depth = np.clip(samples, 0.0, 1.0), 32
    else:
        bit_depth = samples.dtype.itemsize * 8
        pixels = samples.astype(np.float32) / float((1 << bit_depth) - 1)
    if page.associated_alpha:
        pixels = _unpremultiply(pixels)
    return LoadedImage(
        pixels=np.ascontiguousarray(apply_orientation(pixels, page.orientation), dtype=np.float32),
        bit_depth=bit_depth,
        icc_profile=page.icc_profile if _icc_fits(page.icc_profile, pixels.shape[2]) else None,
        exif=None,
        format="TIFF",
        n_frames=page.n_pages,
        path=path,
    )


def _orientation(image: Image.Image, exif: bytes | None, *, ask_pillow: bool) -> int:
    """The EXIF Orientation (1 when absent or malformed).

    Read from ``exif`` when there is one, else (if ``ask_pillow``) from the
    image's own tags, such as a TIFF's Orientation tag.
    """
    from PIL import Image as PILImage

    from .exif import ORIENTATION_TAG

    try:
        if exif is not None:
            parsed = PILImage.Exif()
            parsed.load(exif)
        elif ask_pillow:
            parsed = image.getexif()
        else:
            return 1
        value = parsed.get(ORIENTATION_TAG, 1)
        return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block does not make the image unreadable
        return 1


def _decode_high_depth(
    image: Image.Image, handle: Any, path: Path, frame: int, n_frames: int
) -> tuple[Any, int, bytes | None, bytes | None] | None:
    """Decode the cases where Pillow would drop the low byte of 16-bit samples.

    Returns:
        ``(pixels, bit_depth, icc_profile, exif)``, or ``None`` to let Pillow decode.
    """
    import numpy as np

    from .png import PngFormatError, decode_png, is_16_bit_colour

    if image.format == "PNG" and n_frames == 1:
        position = handle.tell()
        handle.seek(0)
        head = handle.read(33)
        handle.seek(position)  # where Pillow left it
        if not is_16_bit_colour(head):
            return None
        try:
            samples, exif = decode_png(handle)
        except PngFormatError as error:
            reason = str(error)
            if "truncated" in reason:
                reason += "; a partial image is not loaded"
            raise _read_error(path, reason) from None
        pixels = samples.astype(np.float32)
        pixels /= 65535.0
        return pixels, 16, image.info.get("icc_profile") or None, exif
    if image.format == "TIFF" and image.mode in ("RGB", "RGBA", "LA"):
        bits = image.tag_v2.get(258, (8,))  # type: ignore[attr-defined]
        bits = bits if isinstance(bits, tuple) else (bits,)
        if max(bits) < 16:
            return None
        from .tiff import read_tiff_page

        page = _tiff_call(path, read_tiff_page, path, frame, lambda *_: None)  # size and frame already checked
        channels = len(image.getbands())
        if page is None or page.samples.dtype != np.uint16 or page.samples.shape != (image.size[1], image.size[0], channels):
            return None
        pixels = page.samples.astype(np.float32) / 65535.0
        if page.associated_alpha:
            pixels = _unpremultiply(pixels)
        return pixels, 16, image.info.get("icc_profile") or None, None
    return None


def _unpremultiply(pixels: Any) -> Any:
    import numpy as np

    alpha = pixels[:, :, -1:]
    colour = np.divide(pixels[:, :, :-1], alpha, out=np.zeros_like(pixels[:, :, :-1]), where=alpha > 0)
    return np.concatenate([np.clip(colour, 0.0, 1.0), alpha], axis=2)


def pixels_from_pil(image: Image.Image, *, path: Path | None = None) -> tuple[np.ndarray, int, bool]:
    """Convert a loaded Pillow image to float32 ``H x W x C`` pixels in [0, 1].

    See :func:`load_image` for how each mode is mapped. No orientation is applied.

    Args:
        image: A loaded Pillow image.
        path: Named in error messages.

    Returns:
        ``(pixels, bit_depth, keeps_profile)``: ``keeps_profile`` is False when
        the pixels were converted from another colour space (CMYK, LAB, YCbCr,
        HSV), so the image's ICC profile no longer describes them.

    Raises:
        ImageIOError: The mode is not supported, or its values cannot be mapped.
    """
    import numpy as np

    where = f"image '{path}'" if path is not None else "the image"
    mode = image.mode
    if "transparency" in image.info and mode in ("1", "L", "RGB"):
        image = image.convert("RGBA" if mode == "RGB" else "LA")  # Pillow turns the colour key into alpha
        mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"
    if mode in ("P", "PA"):
        target = "RGBA" if mode == "PA" or "transparency" in image.info else "RGB"
        image, mode = image.convert(target), target
    elif mode == "RGBa":
        image, mode = image.convert("RGBA"), "RGBA"
    elif mode == "RGBX":
        image, mode = image.convert("RGB"), "RGB"

    if mode in ("L", "LA", "RGB", "RGBA"):
        array = np.asarray(image)
        pixels = array.reshape(array.shape[0], array.shape[1], -1).astype(np.float32)
        pixels /= 255.0
        return pixels, 8, True
    if mode == "CMYK":
        cmyk = np.asarray(image).astype(np.float32) / 255.0
        pixels = (1.0 - cmyk[:, :, :3]) * (1.0 - cmyk[:, :, 3:4])
        return pixels, 8, False
    if mode in ("YCbCr", "HSV"):
        return np.asarray(image.convert("RGB")).astype(np.float32) / 255.0, 8, False
    if mode == "LAB":
        from PIL import ImageCms

        rgb = ImageCms.profileToProfile(
            image, ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
        return np.asarray(rgb).astype(np.float32) / 255.0, 8, False
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image)
        if mode == "I":
            low, high = int(values.min()), int(values.max())
            if low < 0 or high > 65535:
                raise ImageIOError(
                    f"Cannot read {where}: its 32-bit integer pixels range from {low} to {high}, "
                    "outside 0..65535, and there is no way to tell what 0 and 1 should be. "
                    "Convert it to 16-bit unsigned or 32-bit float first."
                )
        pixels = values.astype(np.float32)
        pixels /= 65535.0
        pixels = pixels[:, :, None]
        key = image.info.get("transparency")
        if isinstance(key, int):
            alpha = (values != key).astype(np.float32)[:, :, None]
            pixels = np.concatenate([pixels, alpha], axis=2)
        return pixels, 16, True
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(values)):
            raise ImageIOError(
                f"Cannot read {where}: it contains NaN or infinite float pixels. "
                "Replace them (e.g. with 0) in the program that made the file."
            )
        return np.clip(values, 0.0, 1.0)[:, :, None], 32, True
    raise ImageIOError(
        f"Cannot read {where}: its pixel mode {mode!r} is not supported (supported: {_SUPPORTED_MODES}). "
        "Convert it to RGB or greyscale first."
    )


# --------------------------------------------------------------------------- saving


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The Pillow format name :func:`save_image` uses for ``path``'s suffix.

    Raises:
        ImageIOError: The suffix is not one of :data:`SAVE_FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    try:
        return SAVE_FORMATS[suffix]
    except KeyError:
        allowed = ", ".join(SAVE_FORMATS)
        received = f"'{Path(path).suffix}'" if suffix else "no suffix"
        raise ImageIOError(
            f"Cannot save image '{path}': the output format comes from the file suffix, which must be one of "
            f"{allowed}. Received: {received}."
        ) from None


def encode_pixels(pixels: Any, bit_depth: int) -> np.ndarray:
    """Quantise pixels to unsigned integers of ``bit_depth`` bits.

    Floats become ``round(clip(x, 0, 1) * (2**bit_depth - 1))`` (round half to
    even, deterministic). uint8 and uint16 arrays are taken as already
    quantised and rescaled exactly when the depth differs (x 257 / 257).

    Args:
        pixels: Float array in [0, 1], or uint8 / uint16 array.
        bit_depth: 8 or 16.

    Returns:
        uint8 or uint16 array of the same shape.

    Raises:
        ImageIOError: NaN/infinite values or an unsupported dtype.
        ParameterError: ``bit_depth`` is not 8 or 16.
    """
    import numpy as np

    if bit_depth not in (8, 16):
        raise ParameterError(f'"bit_depth" must be 8 or 16. Received: bit_depth={bit_depth!r}', param="bit_depth", value=bit_depth)
    array = np.asarray(pixels)
    target = np.uint8 if bit_depth == 8 else np.uint16
    if array.dtype == np.uint8:
        return array.astype(np.uint16) * 257 if bit_depth == 16 else array
    if array.dtype == np.uint16:
        if bit_depth == 16:
            return array
        return np.rint(array / 257.0).astype(np.uint8)
    if array.dtype.kind != "f":
        raise ImageIOError(
            f"Cannot encode pixels of dtype {array.dtype}: expected floats in [0, 1], uint8 or uint16."
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ImageIOError(f"Cannot encode pixels: {bad} values are NaN or infinite; expected floats in [0, 1].")
    scale = float((1 << bit_depth) - 1)
    return np.rint(np.clip(array, 0.0, 1.0) * scale).astype(target)


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if os.path.samefile(a, b):
            return True
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return os.path.abspath(a) == os.path.abspath(b)


class ProtectedFiles:
    """Files that must not be overwritten, indexed once so that checking an output costs O(1).

    Holds the real path of every file and, for those that exist, their
    ``(st_dev, st_ino)``, so an output reaching an input through a symlink or a
    hard link is refused too (what :func:`save_image`'s ``protect`` checks
    pairwise).
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]] = ()) -> None:
        """Index ``paths`` (one ``realpath`` and one ``stat`` each)."""
        real_paths: set[str] = set()
        identities: set[tuple[int, int]] = set()
        for path in paths:
            real_paths.add(os.path.realpath(path))
            try:
                status = os.stat(path)
            except OSError:
                continue
            identities.add((status.st_dev, status.st_ino))
        self._real_paths = frozenset(real_paths)
        self._identities = frozenset(identities)

    @classmethod
    def of(cls, protect: ProtectedFiles | Iterable[str | os.PathLike[str]]) -> ProtectedFiles:
        """``protect`` itself when already indexed, else an index of its paths."""
        return protect if isinstance(protect, cls) else cls(protect)

    def __contains__(self, target: object) -> bool:
        """Whether ``target`` (a path) is, or leads to, a protected file."""
        if not isinstance(target, (str, os.PathLike)):
            return False
        if os.path.realpath(target) in self._real_paths:
            return True
        try:
            status = os.stat(target)
        except OSError:
            return False
        return (status.st_dev, status.st_ino) in self._identities

    def check(self, target: str | os.PathLike[str]) -> None:
        """Refuse to write ``target`` when it is protected.

        Raises:
            ImageIOError: ``target`` is (or leads to) a protected file.
        """
        if target in self:
            raise ImageIOError(
                f"Refusing to overwrite '{target}': it is an input file. Choose a different output path."
            )


def _icc_fits(profile: bytes | None, channels: int) -> bool:
    """Whether an ICC profile's colour space matches grey (C <= 2) or RGB (C >= 3) pixels."""
    if not profile or len(profile) < 128:
        return False
    return profile[16:20] == (b"RGB " if channels >= 3 else b"GRAY")


def _composite_on_white(pixels: Any) -> Any:
    """Drop alpha by compositing over white (what viewers show for transparent areas)."""
    import numpy as np

    array = np.asarray(pixels)
    if array.dtype.kind != "f":
        array = array.astype(np.float32) / (65535.0 if array.dtype == np.uint16 else 255.0)
    array = np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0)
    alpha = array[:, :, -1:]
    return array[:, :, :-1] * alpha + (1.0 - alpha)


def save_image(
    path: str | os.PathLike[str],
    pixels: Any,
    *,
    like: LoadedImage | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write pixels to an image file, atomically.

    The format comes from the suffix (:data:`SAVE_FORMATS`). Alpha is kept
    by PNG, TIFF and WebP; JPEG and BMP (as read by most programs) have
    none, so the image is composited over white, as viewers show it. WebP
    has no grey mode, so grey is written as RGB(A). The ICC profile (when its colour space fits
    the output: RGB profile for colour, grey profile for grey) and the EXIF
    block of ``like`` are carried over where the format supports them (ICC:
    PNG, JPEG, WebP, TIFF; EXIF: PNG, JPEG, WebP, and for JPEG only when it
    fits in one segment). Equal inputs give byte-identical files.

    Args:
        path: Output file; its folder must exist.
        pixels: ``H x W x C`` (or ``H x W``) floats in [0, 1], uint8 or
            uint16, C = 1, 2, 3 or 4.
        like: The loaded source image, for bit depth and metadata.
        bit_depth: 8 or 16; 16 only for PNG and TIFF. Default: 16 when the
            format allows it and ``like`` had 16 or more bits (or ``pixels``
            is uint16), else 8.
        quality: JPEG/WebP quality, 1-100.
        protect: Paths that must not be overwritten (the CLI passes the input
            file unless the user named it as the output explicitly).

    Returns:
        The path written.

    Raises:
        ImageIOError: Unsupported suffix, 16 bits asked of an 8-bit format, a
            protected or invalid target, bad pixels, or a write failure.
        ParameterError: ``quality`` or ``bit_depth`` is out of range.
    """
    import numpy as np

    target = Path(path)
    file_format = format_for_path(target)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ParameterError(f'"quality" must be an integer from 1 to 100. Received: quality={quality!r}', param="quality", value=quality)
    try:
        array = image_array(pixels)
    except NeurofiltersError as error:
        raise ImageIOError(f"Cannot save image '{target}': {error}.") from None
    depth = _resolve_bit_depth(target, file_format, array, like, bit_depth)
    largest = _MAX_SIDE.get(file_format)
    if largest is not None and max(array.shape[:2]) > largest:
        raise ImageIOError(
            f"Cannot save image '{target}': {file_format} images can be at most {largest} pixels wide and high. "
            f"Received: {array.shape[1]} x {array.shape[0]}. Use a .png or .tif output."
        )
    for protected in protect:
        if _same_file(target, Path(protected)):
            raise ImageIOError(
                f"Refusing to overwrite '{target}': it is an input file ({protected}). "
                "Choose a different output path, or name the input explicitly as the output to replace it."
            )
    if target.is_dir():
        raise ImageIOError(f"Cannot save image '{target}': it is a directory. Give a file name with one of {', '.join(SAVE_FORMATS)}.")
    if not target.parent.is_dir():
        raise ImageIOError(f"Cannot save image '{target}': the folder '{target.parent}' does not exist. Create it first.")

    if file_format in _NO_ALPHA_FORMATS and array.shape[2] in (2, 4):
        array = _composite_on_white(array)
    try:
        samples = encode_pixels(array, depth)
    except ImageIOError as error:
        raise ImageIOError(f"Cannot save image '{target}': {error}") from None
    channels = samples.shape[2]
    if file_format == "WEBP" and channels in (1, 2):
        samples = np.concatenate([np.repeat(samples[:, :, :1], 3, axis=2), samples[:, :, 1:]], axis=2)
    channels = samples.shape[2]

    icc_profile = like.icc_profile if like is not None and file_format in _ICC_FORMATS else None
    if not _icc_fits(icc_profile, channels):
        icc_profile = None
    exif = like.exif if like is not None and file_format in _EXIF_FORMATS else None
    if exif is not None and file_format == "JPEG" and len(exif) > _JPEG_MAX_EXIF:
        exif = None

    try:
        with atomic_write(target) as temporary:
            if file_format == "PAT":  # GIMP pattern, named after the file
                from .pat import encode_pat, pattern_name

                temporary.write_bytes(encode_pat(samples, pattern_name(target)))
            else:
                _write(temporary, samples, file_format, quality, icc_profile, exif)
    except ImageIOError:
        raise
    except Exception as error:  # noqa: BLE001 - encoder failures become one error type
        raise ImageIOError(f"Cannot save image '{target}': {_describe(error)}.") from error
    return target


def _resolve_bit_depth(target: Path, file_format: str, array: Any, like: LoadedImage | None, bit_depth: int | None) -> int:
    if bit_depth is None:
        wants_16 = (like is not None and like.bit_depth >= 16) or str(array.dtype) == "uint16"
        return 16 if wants_16 and file_format in HIGH_DEPTH_FORMATS else 8
    if isinstance(bit_depth, bool) or bit_depth not in (8, 16):
        raise ParameterError(f'"bit_depth" must be 8 or 16. Received: bit_depth={bit_depth!r}', param="bit_depth", value=bit_depth)
    if bit_depth == 16 and file_format not in HIGH_DEPTH_FORMATS:
        raise ImageIOError(
            f"Cannot save image '{target}' with 16 bits per channel: {file_format} stores 8 bits. "
            "Use a .png or .tif output for 16 bits, or bit_depth=8."
        )
    return bit_depth


def _write(
    temporary: Path, samples: Any, file_format: str, quality: int, icc_profile: bytes | None, exif: bytes | None
) -> None:
    """Encode ``samples`` (uint8/uint16 H x W x C) into ``temporary``."""
    if file_format == "TIFF":
        from .tiff import write_tiff

        write_tiff(temporary, samples, icc_profile=icc_profile)
        return
    if file_format == "PNG" and samples.dtype.itemsize == 2:
        from .png import encode_png

        temporary.write_bytes(encode_png(samples, icc_profile=icc_profile, exif=exif))
        return
    from PIL import Image

    height, width, channels = samples.shape
    image = Image.frombytes(_MODES_BY_CHANNELS[channels], (width, height), samples.tobytes())
    options: dict[str, Any] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif:
        options["exif"] = exif
    if file_format == "PNG":
        options["compress_level"] = 6
    elif file_format in ("JPEG", "WEBP"):
        options["quality"] = quality
    with open(temporary, "wb") as stream:
        image.save(stream, format=file_format, **options)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file so that readers see the old or the new content, never a partial one.

    Yields a temporary path in the target's folder (hidden, ``.name.XXXX.tmp``).
    When the block ends without an exception the temporary file is flushed to
    disk, given the target's permissions (or the default ones for a new file)
    and renamed over the target. When the block raises, the temporary file is
    removed and the target is left untouched.

    Args:
        path: The file to write.

    Yields:
        The temporary path to write to.

    Raises:
        ImageIOError: The temporary file cannot be created or renamed.
    """
    target = Path(path)
    folder = target.parent
    # the name's hint fits in 255 bytes only for names up to 240 bytes; longer names get a short one
    hint = target.name if len(os.fsencode(target.name)) <= 240 else "nf"
    temporary = folder / f".{hint}.{secrets.token_hex(4)}.tmp"
    try:
        # O_EXCL: never follow or reuse an existing file; mode 0o666 lets the umask decide.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise ImageIOError(
            f"Cannot write '{target}': cannot create a temporary file in '{folder}' ({error.strerror}). "
            "Check that the folder exists and is writable."
        ) from None
    os.close(descriptor)
    try:
        yield temporary
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        descriptor = os.open(temporary, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.replace(temporary, target)
        except OSError as error:
            raise ImageIOError(f"Cannot write '{target}': {error.strerror}. Check the path and its permissions.") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); silently skipped where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
