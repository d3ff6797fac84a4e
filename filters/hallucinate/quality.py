"""The numbers that tell a class visualisation from grey mush: colour saturation, local contrast, sharpness.

The benchmark reports them and the tests hold thresholds on them, so both use this one definition.
"""

from __future__ import annotations

import numpy as np

__all__ = ["local_contrast", "saturation", "sharpness"]


def saturation(image: np.ndarray) -> float:
    """Mean HSV saturation of a float ``H x W x 3`` image in [0, 1]."""
    high, low = image.max(axis=2), image.min(axis=2)
    return float(np.mean((high - low) / np.maximum(high, 1e-6)))


def local_contrast(image: np.ndarray, size: int = 8) -> float:
    """Mean standard deviation of the luminance in ``size x size`` blocks."""
    grey = image @ np.float32([0.299, 0.587, 0.114])
    h, w = (grey.shape[0] // size) * size, (grey.shape[1] // size) * size
    blocks = grey[:h, :w].reshape(h // size, size, w // size, size)
    return float(blocks.std(axis=(1, 3)).mean())


def sharpness(image: np.ndarray) -> float:
    """Mean gradient magnitude of the luminance (forward differences, per pixel, at the image's own size).

    An image enlarged from a small render has small gradients everywhere; detail drawn at the
    image's own size has large ones.
    """
    grey = np.asarray(image, np.float32) @ np.float32([0.299, 0.587, 0.114])
    dy = np.diff(grey, axis=0)[:, :-1]
    dx = np.diff(grey, axis=1)[:-1, :]
    return float(np.mean(np.hypot(dx, dy)))
