"""The one call every front end makes to run a filter: validate, load image parameters, apply."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .core.call import apply_filter
from .core.context import ModelCache, OutputSink, ProgressCallback, SummarySink
from .core.params import ParamValues, validate_params
from .core.registry import get_registry
from .core.specs import FilterSpec
from .imageio.files import LoadedImage
from .imageio.values import load_image_params, to_loaded_image

__all__ = ["run"]


def run(
    spec_or_name: FilterSpec | str,
    image: Any,
    values: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    models: ModelCache | None = None,
    progress: ProgressCallback | None = None,
    emit: OutputSink | None = None,
    report: SummarySink | None = None,
    max_pixels: int | None = None,
) -> Any:
    """Run one filter on one image as every front end does: validate → load image parameters → apply.

    The command line, the Python API, the GIMP worker and the batch runner all
    call this. The names the user gave travel inside :class:`~.core.params.ParamValues`
    (``values.given``), through loading, to the host's preset rule
    (:func:`~.core.call.resolve_presets`, from the spec's ``presets``), which
    runs before the filter: a value the user set explicitly beats a preset,
    whichever front end set it, and the filter receives final values.

    Args:
        spec_or_name: The filter, or the name of a registered one.
        image: The input: float32 pixels ``H x W x C`` in [0, 1] (C = 1..4),
            as :func:`~.core.call.apply_filter` takes them, a
            :class:`~.imageio.files.LoadedImage`, a file path or a Pillow image
            (read by :func:`~.imageio.values.to_loaded_image`).
        values: The user's values by parameter name (validated here; each key
            counts as given), or :class:`~.core.params.ParamValues` already
            validated (kept as they are, ``given`` included) and perhaps loaded
            (then not loaded again: the batch loads image parameters once per process).
        seed: Seed for the filter's randomness.
        models: The process's model cache (a new one when ``None``).
        progress: ``callback(fraction, message)``.
        emit: ``sink(name, pixels)`` for the filter's extra outputs (without
            one they are dropped).
        report: ``sink(line)`` for each line of the run's summary.
        max_pixels: Pixel limit for the files read here (the input when it is a
            path, and the image parameters); ``None``: Pillow's limit.

    Returns:
        What :func:`~.core.call.apply_filter` returns: float32 ``h x w x 3``
        (``x 4`` when the input had alpha and the size was kept) in [0, 1].

    Raises:
        RegistryError: ``spec_or_name`` names no registered filter.
        ParameterError: An invalid value or an image parameter that cannot be
            read (``error.param`` names the parameter).
        ImageIOError: The input file cannot be read.
        NeurofiltersError: The filter failed in a way it explained.

    Example:
        >>> import numpy as np
        >>> from neurofilters.plugin_host.front import run
        >>> run("deepdream", np.full((32, 32, 3), 0.5, np.float32), {"steps": 1, "octaves": 1}, seed=7).shape
        (32, 32, 3)
    """
    spec = get_registry().get_filter(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    checked = values if isinstance(values, ParamValues) else validate_params(spec.params, values or {})
    pixels = _pixels(image, max_pixels)
    loaded = load_image_params(spec.params, checked, max_pixels=max_pixels)
    return apply_filter(spec, pixels, loaded, seed=seed, progress=progress, models=models, emit=emit, report=report)


def _pixels(image: Any, max_pixels: int | None) -> Any:
    """The input's pixels: arrays as they are, a loaded image's pixels, files and Pillow images read."""
    if isinstance(image, LoadedImage):
        return image.pixels
    if isinstance(image, (str, os.PathLike)) or type(image).__module__.startswith("PIL."):
        return to_loaded_image(image, max_pixels=max_pixels).pixels
    return image
