"""TIFF through ``tifffile``: writing 8- and 16-bit files, and reading what Pillow reads at 8 bits or not at all.

Pillow reads 16-bit RGB(A) TIFFs at 8 bits, cannot open 16-bit grey+alpha
or float RGB ones, and writes none of them. ``tifffile`` does all of this
(with ``imagecodecs`` for LZW and other codecs); this module only maps its
pages to the layouts :mod:`neurofilters.plugin_host.imageio.files` loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import NeurofiltersError

__all__ = ["TiffFormatError", "TiffPage", "check_complete", "read_tiff_page", "write_tiff"]


class TiffFormatError(ValueError):
    """A TIFF page that cannot be decoded (the message says why)."""


def write_tiff(path: Path, samples: Any, *, icc_profile: bytes | None = None) -> None:
    """Write ``H x W x C`` uint8 or uint16 samples as a deflate-compressed TIFF.

    C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (alpha stored unassociated). No
    date, no software tag and one thread, so equal arguments give equal bytes.

    Args:
        path: The file to write.
        samples: The pixels.
        icc_profile: Stored in tag 34675.
    """
    import tifffile

    channels = samples.shape[2]
    tifffile.imwrite(
        path,
        samples[:, :, 0] if channels == 1 else samples,
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
        compression="adobe_deflate",
        compressionargs={"level": 6},
        iccprofile=icc_profile or None,
        resolution=(72, 72),
        resolutionunit="inch",
        metadata=None,
        software=False,
        maxworkers=1,
    )


def _check_complete(page: Any, file_size: int) -> None:
    ends = [int(offset) + int(count) for offset, count in zip(page.dataoffsets, page.databytecounts)]
    if ends and max(ends) > file_size:
        raise TiffFormatError(
            f"the file is truncated (its image data needs {max(ends):,} bytes, the file has {file_size:,})"
        )


def check_complete(path: Path, frame: int) -> None:
    """Refuse a page whose image data runs past the end of the file.

    Raises:
        TiffFormatError: The file is truncated. (Nothing is raised when
            ``tifffile`` cannot parse the file at all.)
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page, file_size = tif.pages[frame], tif.filehandle.size
    except Exception:  # noqa: BLE001 - an unparseable file is the caller's error to report
        return
    _check_complete(page, file_size)


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
    """Read a grey(+alpha) or RGB(A) TIFF page with ``tifffile``, for files Pillow cannot open or reads at 8 bits.

    Args:
        path: The file.
        frame: Page index.
        check: ``check(n_pages, width, height)``, called before decoding; it
            raises to refuse the page (frame out of range, too many pixels).

    Returns:
        The page, or ``None`` when ``tifffile`` cannot read it or it is not a
        layout this function maps (grey/RGB, 1-4 samples of 8/16-bit unsigned
        or 32/64-bit float).

    Raises:
        TiffFormatError: The page's image data runs past the end of the file.
    """
    import numpy as np
    import tifffile

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
            _check_complete(page, tif.filehandle.size)
            array = page.asarray()
            axes = page.axes
    except (NeurofiltersError, TiffFormatError):  # refused by check() or truncated
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
