"""Turning a saliency map into what the user sees: colormaps, heat-map blends and masks.

The map arrives normalised (:func:`neurofilters.filters.attribution.methods.normalise`).

The colormaps are piecewise-linear through a handful of anchor colours of the
well-known maps (matplotlib is not a dependency; these few anchors are enough
for a heat map).
"""

from __future__ import annotations

import numpy as np

from ..smoothing import gaussian_blur

__all__ = ["COLORMAP_ANCHORS", "apply_colormap", "render", "smooth"]

#: Anchor colours (low to high) of each colormap, as 0-255 RGB.
COLORMAP_ANCHORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "turbo": ((48, 18, 59), (65, 69, 171), (70, 117, 237), (57, 162, 252), (27, 207, 212), (36, 236, 166),
              (97, 252, 108), (164, 252, 59), (209, 232, 52), (243, 198, 58), (254, 155, 45), (243, 99, 21),
              (217, 56, 6), (177, 25, 1), (122, 4, 2)),
    "jet": ((0, 0, 128), (0, 0, 255), (0, 128, 255), (0, 255, 255), (128, 255, 128), (255, 255, 0),
            (255, 128, 0), (255, 0, 0), (128, 0, 0)),
    "inferno": ((0, 0, 4), (27, 12, 65), (74, 12, 107), (120, 28, 109), (165, 44, 96), (207, 68, 70),
                (237, 105, 37), (251, 155, 6), (247, 209, 61), (252, 255, 164)),
    "viridis": ((68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142), (31, 158, 137),
                (53, 183, 121), (110, 206, 88), (181, 222, 43), (253, 231, 37)),
    "grey": ((0, 0, 0), (255, 255, 255)),
}


def apply_colormap(values: np.ndarray, name: str) -> np.ndarray:
    """Colour a map in [0, 1] (``H x W``): float32 ``H x W x 3`` in [0, 1].

    Raises:
        ValueError: Unknown colormap name.
    """
    if name not in COLORMAP_ANCHORS:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAP_ANCHORS)}. Received: colormap={name!r}")
    anchors = np.asarray(COLORMAP_ANCHORS[name], np.float32) / 255.0
    positions = np.linspace(0.0, 1.0, len(anchors))
    flat = np.clip(values, 0.0, 1.0).ravel()
    channels = [np.interp(flat, positions, anchors[:, channel]) for channel in range(3)]
    return np.stack(channels, axis=-1).reshape(*values.shape, 3).astype(np.float32)


def smooth(values: np.ndarray, percent_of_diagonal: float) -> np.ndarray:
    """Gaussian blur with a radius given in percent of the image diagonal."""
    if percent_of_diagonal <= 0:
        return values.astype(np.float32)
    sigma = percent_of_diagonal / 100.0 * float(np.hypot(*values.shape[:2]))
    return gaussian_blur(values.astype(np.float32), sigma)


def render(
    image: np.ndarray,
    grey: np.ndarray,
    *,
    output: str,
    colormap: str = "turbo",
    opacity: float = 0.5,
    mask_coverage: float = 0.25,
) -> np.ndarray:
    """The visible result.

    Args:
        image: The photo, float32 ``H x W x 3`` in [0, 1].
        grey: The normalised map, float32 ``H x W`` in [0, 1].
        output: ``grey`` (the map), ``heatmap`` (coloured map blended over the
            photo) or ``mask`` (white on the ``mask_coverage`` most salient share).
        colormap: See :data:`COLORMAP_ANCHORS`.
        opacity: Heat map weight over the photo.
        mask_coverage: Share of the pixels the mask covers.

    Returns:
        float32 ``H x W x 3`` in [0, 1].
    """
    if output == "grey":
        return np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)
    if output == "heatmap":
        colours = apply_colormap(grey, colormap)
        return np.clip((1.0 - opacity) * image + opacity * colours, 0.0, 1.0).astype(np.float32)
    if output == "mask":
        threshold = float(np.quantile(grey, 1.0 - mask_coverage))
        mask = (grey > threshold) if threshold > 0 or not np.any(grey > 0) else (grey > 0)
        if not mask.any():
            mask = grey >= grey.max()
        return np.repeat(mask[:, :, None], 3, axis=2).astype(np.float32)
    raise ValueError(f"output must be one of heatmap, grey, mask. Received: output={output!r}")
