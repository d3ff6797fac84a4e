"""Drawing for the explorer: colour maps, labelled tiles and grids (contact sheets) as float RGB arrays.

Colour maps come from matplotlib; text and resizing from Pillow (its bundled
scalable font, so labels look the same on every machine).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["COLORMAPS", "colorize", "grid", "label_tile", "resize", "text_size"]

#: Colour maps offered for activation maps.
COLORMAPS = ("viridis", "magma", "inferno", "gray")
#: Background of grids and sheets (dark grey, so bright maps stand out).
BACKGROUND = (0.12, 0.12, 0.12)


def colorize(values: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """Map ``H x W`` values in [0, 1] to float32 ``H x W x 3`` colours."""
    clipped = np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0)
    if colormap == "gray":
        return np.repeat(clipped[:, :, None], 3, axis=2)
    from matplotlib import colormaps

    return colormaps[colormap](clipped)[:, :, :3].astype(np.float32)


def resize(image: np.ndarray, height: int, width: int, *, nearest: bool = False) -> np.ndarray:
    """Resize float ``H x W x 3`` (Pillow, per channel: bicubic, or nearest for map cells)."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32)
    method = Image.NEAREST if nearest else Image.BICUBIC
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], np.float32)).resize((width, height), method))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def text_size(text: str, size: int) -> tuple[int, int]:
    """``(width, height)`` of ``text`` in the label font of ``size`` px."""
    left, top, right, bottom = _font(size).getbbox(text)
    return int(right - left), int(bottom - top)


def label_tile(tile: np.ndarray, text: str, *, font_size: int = 0) -> np.ndarray:
    """``tile`` with a dark strip below holding ``text`` (one line, cut to fit).

    Args:
        tile: float ``H x W x 3``.
        text: The label.
        font_size: Pixels; 0 picks one from the tile's width.
    """
    height, width = tile.shape[:2]
    size = font_size or max(9, min(16, width // 7))
    strip = size + 6
    canvas = Image.new("RGB", (width, height + strip), tuple(int(255 * c) for c in BACKGROUND))
    canvas.paste(Image.fromarray((np.clip(tile, 0, 1) * 255 + 0.5).astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    while text and text_size(text, size)[0] > width - 4:
        text = text[:-1]
    draw.text((2, height + 2), text, fill=(235, 235, 235), font=_font(size))
    return np.asarray(canvas, np.float32) / 255.0


def grid(tiles: Sequence[np.ndarray], *, columns: int = 0, gap: int = 4) -> np.ndarray:
    """Tiles of equal size in rows, ``gap`` pixels apart, on a dark background.

    Args:
        tiles: float ``h x w x 3`` arrays, all the same size.
        columns: Tiles per row; 0 makes the grid about square.
        gap: Pixels between tiles and around the edge.

    Returns:
        float32 ``H x W x 3``.
    """
    count = len(tiles)
    if count == 0:
        raise ValueError("grid() needs at least one tile")
    height, width = tiles[0].shape[:2]
    columns = columns or max(1, math.ceil(math.sqrt(count * height / width)))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    out = np.empty((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), np.float32)
    out[:] = BACKGROUND
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = gap + row * (height + gap), gap + column * (width + gap)
        out[top : top + height, left : left + width] = tile[:, :, :3]
    return out
