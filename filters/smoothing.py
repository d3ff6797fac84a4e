"""Image-space smoothing shared by the filters: Gaussian blur, Laplacian-pyramid normalisation, masks.

numpy only (no SciPy, no Keras); arrays are float32 ``H x W`` or ``H x W x C``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gaussian_blur", "laplacian_normalize", "feather_inward"]

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def _convolve_axis(array: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Convolve along one axis with reflect padding, output the same size."""
    radius = len(kernel) // 2
    length = array.shape[axis]
    if length == 1:
        return array.astype(np.float32, copy=True)
    pad = [(0, 0)] * array.ndim
    pad[axis] = (radius, radius)
    # "reflect" needs length > radius; fall back to "edge" for very short axes.
    padded = np.pad(array, pad, mode="reflect" if length > radius else "edge")
    out = np.zeros(array.shape, dtype=np.float32)
    for offset, weight in enumerate(kernel):
        index = [slice(None)] * array.ndim
        index[axis] = slice(offset, offset + length)
        out += np.float32(weight) * padded[tuple(index)]
    return out


def gaussian_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the first two axes (reflect borders).

    Args:
        array: ``H x W`` or ``H x W x C``.
        sigma: Standard deviation in pixels; <= 0 returns a copy.

    Returns:
        A new float32 array of the same shape.
    """
    array = np.asarray(array, dtype=np.float32)
    if sigma <= 0:
        return array.copy()
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    return _convolve_axis(_convolve_axis(array, kernel, 0), kernel, 1)


def _down(array: np.ndarray) -> np.ndarray:
    return _convolve_axis(_convolve_axis(array, _BINOMIAL, 0), _BINOMIAL, 1)[::2, ::2]


def _up(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    out[::2, ::2] = array
    return 4.0 * _convolve_axis(_convolve_axis(out, _BINOMIAL, 0), _BINOMIAL, 1)


def laplacian_normalize(array: np.ndarray, levels: int = 4, eps: float = 1e-8) -> np.ndarray:
    """Split into a Laplacian pyramid, give every level unit standard deviation, merge.

    This is the gradient conditioning of Mordvintsev's TensorFlow DeepDream
    notebook (``lap_normalize``): high frequencies no longer dominate the
    step, so dreams grow larger, smoother structures.

    Args:
        array: ``H x W`` or ``H x W x C`` (typically a gradient).
        levels: Pyramid levels (fewer if the image is too small to halve).
        eps: Added to each level's standard deviation.

    Returns:
        A new float32 array of the same shape.
    """
    current = np.asarray(array, dtype=np.float32)
    bands: list[np.ndarray] = []
    for _ in range(levels - 1):
        if min(current.shape[:2]) < 4:
            break
        low = _down(current)
        bands.append(current - _up(low, current.shape))
        current = low
    bands.append(current)
    result = bands[-1] / (np.float32(bands[-1].std()) + np.float32(eps))
    for band in reversed(bands[:-1]):
        result = _up(result, band.shape) + band / (np.float32(band.std()) + np.float32(eps))
    return result


def feather_inward(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soften a mask's edges *inside* the mask only.

    ``min(mask, blur(mask))``: where the mask is 0 it stays exactly 0 (so
    those pixels are provably untouched), and inside it ramps up over about
    ``radius`` pixels from the edge.

    Args:
        mask: ``H x W`` float in [0, 1].
        radius: Width of the ramp in pixels; <= 0 returns a copy.

    Returns:
        A new float32 mask.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if radius <= 0:
        return mask.copy()
    return np.minimum(mask, gaussian_blur(mask, radius / 2.0))
