"""Seamless tiling of per-pixel computations (gradients, stylisation) over images of any size.

The scheme is *overlap-discard*: the image is cut into non-overlapping
**cores** that cover it exactly; each core is computed inside a larger
**window** (the core plus a margin of real image context on every side where
the image has one). The network sees context across core borders, and only
the core part of each window's result is kept, so each pixel's value comes
from exactly one window and seams do not appear. All windows of a plan have
the same size, so a compiled step is traced once per size and windows can be
batched.

Rolls (random shifts, as in the TF DeepDream tutorial) are applied through
wrap-around indexing of the windows instead of ``np.roll`` of the whole
image, which would copy it twice per step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Tile", "plan_tiles", "window_shape_for_budget", "read_window", "write_core"]


@dataclass(frozen=True)
class Tile:
    """One window and the core it is responsible for, in image coordinates.

    Attributes:
        window: ``(y0, y1, x0, x1)`` of the region fed to the network.
        core: ``(y0, y1, x0, x1)`` of the region whose result is kept;
            inside ``window``.
    """

    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices selecting the core inside the window's result."""
        wy0, _, wx0, _ = self.window
        cy0, cy1, cx0, cx1 = self.core
        return slice(cy0 - wy0, cy1 - wy0), slice(cx0 - wx0, cx1 - wx0)

    @property
    def core_area(self) -> int:
        """Pixels in the core."""
        return (self.core[1] - self.core[0]) * (self.core[3] - self.core[2])

    @property
    def window_area(self) -> int:
        """Pixels in the window."""
        return (self.window[1] - self.window[0]) * (self.window[3] - self.window[2])


def _split_axis(length: int, window: int, margin: int, align: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(window0, window1, core0, core1)`` along one axis."""
    if length <= window:
        yield 0, length, 0, length
        return
    margin = min(margin, (window - 1) // 4)  # keep at least half the window as core
    core = max(1, window - 2 * margin - align)  # room to snap the window to the grid
    count = math.ceil(length / core)
    edges = np.linspace(0, length, count + 1).round().astype(int)
    for start, stop in zip(edges[:-1], edges[1:]):
        centred = start - (window - (stop - start)) // 2
        first = min(max(centred, 0), length - window)
        snapped = first - first % align
        # Snap to the network's stride grid when the core keeps its margin.
        if snapped >= 0 and start - snapped >= min(margin, start) and snapped + window >= min(stop + margin, length):
            first = snapped
        yield first, first + window, int(start), int(stop)


def plan_tiles(height: int, width: int, window: tuple[int, int], margin: int, align: int = 1) -> list[Tile]:
    """Cut an image into equally sized windows whose cores cover it exactly.

    Args:
        height: Image height.
        width: Image width.
        window: Largest window ``(height, width)``; an image side that fits
            gets a single window of that side's full length.
        margin: Context kept on each side of a core (where the image extends
            that far); cores are ``window - 2 * margin`` long. The margin
            shrinks for windows smaller than ``4 * margin``.
        align: Window origins are snapped to multiples of this (the network's
            total stride) where possible, so every window samples the image
            on the same grid as a whole-image pass (strided convolutions
            with SAME padding are not shift invariant).

    Returns:
        Tiles in row-major order. Every window has the same shape.
    """
    if height < 1 or width < 1:
        raise ValueError(f"Image size must be at least 1 x 1. Received: {height} x {width}")
    if window[0] < 1 or window[1] < 1 or margin < 0:
        raise ValueError(f"Need window >= 1 and margin >= 0. Received: window={window}, margin={margin}")
    align = max(1, int(align))
    rows = list(_split_axis(height, window[0], margin, align))
    cols = list(_split_axis(width, window[1], margin, align))
    return [
        Tile(window=(wy0, wy1, wx0, wx1), core=(cy0, cy1, cx0, cx1))
        for wy0, wy1, cy0, cy1 in rows
        for wx0, wx1, cx0, cx1 in cols
    ]


def _window_length(length: int, count: int, margin: int, align: int, multiple: int) -> int:
    """Window side giving ``count`` cores of at least ``ceil(length / count)`` along one axis."""
    if count <= 1:
        return length
    side = math.ceil(length / count) + 2 * margin + align
    side = -(-side // multiple) * multiple
    return min(length, side)


def window_shape_for_budget(
    height: int,
    width: int,
    max_pixels: int,
    *,
    margin: int = 0,
    align: int = 1,
    multiple: int = 8,
    max_side: int = 0,
) -> tuple[int, int]:
    """The cheapest window shape for an image given how many pixels one window may have.

    The whole image if it fits. Otherwise, among the ways to cut each side into
    ``n`` equal cores, the one whose windows (core + ``margin`` on each side +
    ``align`` of room to snap to the stride grid) fit the budget with the
    fewest pixels computed in total (margins are computed twice), then the
    fewest windows. So a side only slightly above the budget gets two
    half-size windows, not one full-size window plus a nearly redundant one.

    Args:
        height: Image height.
        width: Image width.
        max_pixels: Memory budget expressed in input pixels per window.
        margin: Context each core keeps on both sides (see :func:`plan_tiles`).
        align: Stride grid the windows are snapped to (see :func:`plan_tiles`).
        multiple: Window sides are rounded up to multiples of this when tiling.
        max_side: Upper bound on a window side (0 = none).

    Returns:
        ``(window_height, window_width)``, usable as :func:`plan_tiles`'s ``window``.
    """
    limit_side = max_side if max_side > 0 else max(height, width)
    if height * width <= max_pixels and max(height, width) <= limit_side:
        return height, width
    best: tuple[int, int, int, int] | None = None  # (total pixels, windows, h, w)
    for rows in range(1, height + 1):
        window_h = _window_length(height, rows, margin, align, multiple)
        if window_h <= limit_side and window_h <= max_pixels:
            cols_needed = None
            for cols in range(1, width + 1):
                window_w = _window_length(width, cols, margin, align, multiple)
                if window_w <= limit_side and window_h * window_w <= max_pixels:
                    cols_needed = cols
                    break
                if window_w <= 2 * margin + align + multiple:
                    break  # windows cannot get narrower
            if cols_needed is not None:
                window_w = _window_length(width, cols_needed, margin, align, multiple)
                candidate = (rows * cols_needed * window_h * window_w, rows * cols_needed, window_h, window_w)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        if window_h <= 2 * margin + align + multiple:
            break  # windows cannot get shorter
    if best is None:  # the budget is below the smallest useful window: use the smallest
        side = 4 * margin + align + multiple
        return min(height, side), min(width, side)
    return best[2], best[3]


def read_window(image: np.ndarray, tile: Tile, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The window of ``np.roll(image, shift, axis=(0, 1))`` without rolling the whole image.

    Args:
        image: ``H x W x C`` array.
        tile: The tile whose window to read.
        shift: ``(dy, dx)`` roll applied to the image.

    Returns:
        A new ``h x w x C`` array.
    """
    y0, y1, x0, x1 = tile.window
    if shift == (0, 0):
        return image[y0:y1, x0:x1].copy()
    rows = (np.arange(y0, y1) - shift[0]) % image.shape[0]
    cols = (np.arange(x0, x1) - shift[1]) % image.shape[1]
    return image[rows[:, None], cols[None, :]]


def write_core(target: np.ndarray, tile: Tile, window_result: np.ndarray, shift: tuple[int, int] = (0, 0)) -> None:
    """Store the core part of a window's result into the (unrolled) ``target``.

    Args:
        target: ``H x W x C`` array in the original (unrolled) frame.
        tile: The tile the result belongs to.
        window_result: The ``h x w x C`` result computed on the window.
        shift: The roll that was used with :func:`read_window`.
    """
    y0, y1, x0, x1 = tile.core
    core = window_result[tile.core_in_window]
    if shift == (0, 0):
        target[y0:y1, x0:x1] = core
        return
    rows = (np.arange(y0, y1) - shift[0]) % target.shape[0]
    cols = (np.arange(x0, x1) - shift[1]) % target.shape[1]
    target[rows[:, None], cols[None, :]] = core
