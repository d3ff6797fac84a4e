"""Image pyramids for multi-scale ("octave") optimisation, shared by the dreaming filters.

Images here are numpy float32 ``H x W x C`` arrays; nothing in this module
imports Keras.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["octave_shapes", "resize_image"]

_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1}


def resize_image(image: np.ndarray, shape: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize a float ``H x W x C`` (or ``H x W``) image to ``shape = (height, width)``.

    Uses Pillow's float ("F") mode per channel: deterministic, antialiased
    when shrinking, no value clipping (gradients and details can be negative).

    Args:
        image: float array ``H x W`` or ``H x W x C``.
        shape: Target ``(height, width)``, both >= 1.
        method: ``nearest``, ``bilinear``, ``bicubic`` or ``lanczos``.

    Returns:
        A new float32 array of the target size (a copy even if the size is unchanged).

    Raises:
        ValueError: Unknown method or a target size below 1.
    """
    from PIL import Image

    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"Target size must be at least 1 x 1. Received: shape={shape}")
    if method not in _FILTERS:
        raise ValueError(f"method must be one of {', '.join(_FILTERS)}. Received: method={method!r}")
    array = np.asarray(image, dtype=np.float32)
    if array.shape[:2] == (height, width):
        return array.copy()
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array, "F").resize((width, height), _FILTERS[method]), dtype=np.float32)
    out = np.empty((height, width, array.shape[2]), dtype=np.float32)
    for channel in range(array.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(array[:, :, channel]), "F")
        out[:, :, channel] = np.asarray(plane.resize((width, height), _FILTERS[method]))
    return out


def octave_shapes(
    height: int,
    width: int,
    octaves: int,
    scale: float,
    *,
    upscale_octaves: int = 0,
    min_size: int = 1,
) -> list[tuple[int, int]]:
    """Sizes of an octave schedule, smallest first.

    Octave ``n`` has size ``round(base * scale ** n)`` with ``n`` running
    from ``upscale_octaves - octaves + 1`` to ``upscale_octaves``: the TF
    DeepDream tutorial's ``range(-2, 3)`` with scale 1.3 is ``octaves=5,
    upscale_octaves=2``; Google's notebook (4 octaves x 1.4, ending at the
    image's size) is ``octaves=4, upscale_octaves=0``. Octaves whose shorter
    side would fall below ``min_size`` are dropped (the Keras example does the
    same), so the list may be shorter than ``octaves`` but never empty.

    Args:
        height: Base image height.
        width: Base image width.
        octaves: Number of octaves, >= 1.
        scale: Size ratio between neighbouring octaves, > 1.
        upscale_octaves: How many of the octaves lie above the base size.
        min_size: Smallest allowed shorter side (the network's minimum).

    Returns:
        ``[(h, w), ...]`` from the smallest octave to the largest.
    """
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1. Received: octaves={octaves}")
    if scale <= 1.0:
        raise ValueError(f"scale must be > 1. Received: scale={scale}")
    shapes: list[tuple[int, int]] = []
    for exponent in range(upscale_octaves - octaves + 1, upscale_octaves + 1):
        factor = scale**exponent
        shape = (max(1, int(round(height * factor))), max(1, int(round(width * factor))))
        if min(shape) >= min_size and shape not in shapes:
            shapes.append(shape)
    if not shapes:
        factor = max(1.0, min_size / max(1, min(height, width)))
        shapes.append((max(min_size, int(math.ceil(height * factor))), max(min_size, int(math.ceil(width * factor)))))
    return shapes
