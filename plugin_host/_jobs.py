"""Running one filter on one image: the contract between host and filter.

The host turns whatever it loaded (grey, grey+alpha, RGB, RGBA) into the
float32 ``H x W x 3`` image in [0, 1] every filter receives, keeps alpha aside
and puts it back untouched afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._context import FilterContext, ModelCache, ProgressCallback
from ._errors import NeurofiltersError
from ._params import validate_params
from ._specs import FilterSpec

__all__ = ["apply_filter", "split_alpha", "join_alpha"]


def split_alpha(pixels: Any) -> tuple[Any, Any | None]:
    """Split ``H x W x C`` (C = 1, 2, 3 or 4) into RGB ``H x W x 3`` and alpha ``H x W`` (or None).

    Raises:
        NeurofiltersError: The array is not an image of a supported shape.
    """
    import numpy as np

    array = np.asarray(pixels)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise NeurofiltersError(
            f"Expected an image array of shape H x W x C with C in 1..4. Received: shape={array.shape}"
        )
    channels = array.shape[2]
    alpha = array[:, :, channels - 1].copy() if channels in (2, 4) else None
    colour = array[:, :, : 3 if channels >= 3 else 1]
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(colour, dtype=np.float32), alpha


def join_alpha(rgb: Any, alpha: Any | None) -> Any:
    """Put ``alpha`` back beside ``rgb`` (when the filter kept the image size)."""
    import numpy as np

    if alpha is None:
        return rgb
    if rgb.shape[:2] != alpha.shape[:2]:
        return rgb  # a filter that changes the size (e.g. a layer table) has no alpha to keep
    return np.concatenate([rgb, alpha[:, :, None].astype(rgb.dtype)], axis=2)


def apply_filter(
    spec: FilterSpec,
    pixels: Any,
    values: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    models: ModelCache | None = None,
    context: FilterContext | None = None,
    validated: bool = False,
) -> Any:
    """Validate parameters, run ``spec`` on ``pixels`` and return the result.

    Args:
        spec: The filter.
        pixels: float32 ``H x W x C`` in [0, 1], C = 1 (grey), 2 (grey+alpha),
            3 (RGB) or 4 (RGBA).
        values: User parameter values; missing ones take their defaults.
        seed: Seed for the filter's randomness.
        progress: ``callback(fraction, message)``.
        models: A model cache to reuse between calls.
        context: A ready context (overrides ``seed``, ``progress`` and ``models``).
        validated: ``values`` already went through :func:`validate_params`.

    Returns:
        float32 ``h x w x 3`` (or ``x 4`` when the input had alpha and the size
        was kept) in [0, 1].

    Raises:
        ParameterError: A parameter is invalid.
        NeurofiltersError: The filter failed in a way it explained.
    """
    import numpy as np

    params = dict(values or {}) if validated else validate_params(spec.params, values or {})
    rgb, alpha = split_alpha(pixels)
    if not np.all(np.isfinite(rgb)):
        raise NeurofiltersError("The input image contains NaN or infinite values.")
    rgb = np.clip(rgb, 0.0, 1.0)
    if context is None:
        context = FilterContext(seed=seed, progress=progress, models=models)
    context.alpha = None if alpha is None else np.clip(alpha, 0.0, 1.0).astype(np.float32)
    result = spec.runner()(rgb, params, context)
    result = np.asarray(result, dtype=np.float32)
    if result.ndim != 3 or result.shape[2] != 3:
        raise NeurofiltersError(
            f"Filter {spec.name!r} returned an array of shape {result.shape}; expected H x W x 3."
        )
    context.progress(1.0, "done")
    return join_alpha(np.clip(result, 0.0, 1.0), alpha)
