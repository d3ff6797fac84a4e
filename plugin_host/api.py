"""The Python API for notebooks and scripts: ``neurofilters.apply``, ``list_filters``, ``describe``, ``load_model``.

It goes through the same host/filter call as the command line, the batch runner
and the GIMP worker (:func:`~.core.call.apply_filter`), with the same
validation and image loading, so ``apply(...).save(path)`` writes the bytes
``neurofilters run`` writes for the same input, parameters and seed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.call import apply_filter
from .core.context import ModelCache, ProgressCallback
from .core.params import MAX_SEED, Param, format_value, shown_value, validate_params
from .core.quiet import native_stderr_silenced, quiet_frameworks
from .core.registry import get_registry
from .core.specs import FilterSpec
from .imageio.files import LoadedImage
from .imageio.guard import WriteGuard, param_inputs
from .imageio.values import load_image_params, to_loaded_image

__all__ = ["FilterInfo", "FilterList", "Result", "apply", "describe", "list_filters", "load_model"]

_MODELS: ModelCache | None = None


def _models() -> ModelCache:
    global _MODELS
    if _MODELS is None:
        _MODELS = ModelCache()
    return _MODELS


@dataclass
class Result:
    """What :func:`apply` returns: the filtered pixels, extra outputs, and how to save them.

    Attributes:
        pixels: float32 ``H x W x C`` in [0, 1] (alpha kept when the size was kept).
        outputs: Extra outputs the filter emitted (frames, maps, noise), by name.
        source: The input as loaded (its bit depth, ICC profile and EXIF are
            carried over by :meth:`save`, as the command line does).
        summary: What the filter reported about its result, one line each
            (``"lite0 sees: flamingo 0.93, ..."``, a loss, a PSNR); the lines
            ``neurofilters run`` prints. Empty when the filter says nothing.
        inputs: ``(role, path)`` of every file the call read (the input and
            image parameters given as paths): :meth:`save` never writes over them.
    """

    pixels: Any
    outputs: dict[str, Any] = field(default_factory=dict)
    source: LoadedImage | None = None
    summary: str = ""
    inputs: tuple[tuple[str, str], ...] = ()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        import numpy as np

        return np.asarray(self.pixels, dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        """The pixels' shape, ``(H, W, C)``."""
        return tuple(self.pixels.shape)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the result atomically, like ``neurofilters run`` (format from the suffix), through the host's guard.

        Args:
            path: The file to write.
            overwrite: Replace an existing file that neurofilters did not write (an input never is).

        Returns:
            The path written.

        Raises:
            UsageError: ``path`` is an input of the call, or exists and was not written by neurofilters.
        """
        guard = WriteGuard(self.inputs, overwrite=overwrite, overwrite_flag="overwrite=True")
        return guard.save_image(path, self.pixels, like=self.source)

    def to_pil(self) -> Any:
        """The result as an 8-bit ``PIL.Image.Image`` (RGB, RGBA, L or LA)."""
        import numpy as np
        from PIL import Image

        array = np.rint(np.clip(self.pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        return Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)


@dataclass(frozen=True)
class FilterInfo:
    """A filter as :func:`list_filters` and :func:`describe` show it.

    Attributes:
        name: The name to pass to :func:`apply`.
        title: Human title.
        category: Menu group.
        summary: One line.
        description: Longer text.
        params: The parameter declarations (name, kind, default, help, bounds).
    """

    name: str
    title: str
    category: str
    summary: str
    description: str = field(repr=False)
    params: tuple[Param, ...] = field(repr=False)

    def defaults(self) -> dict[str, str]:
        """Each parameter's default, written as a user would type it."""
        return {param.name: format_value(param, param.default) for param in self.params}


class FilterList(list):  # type: ignore[type-arg]
    """What :func:`list_filters` returns: a list of :class:`FilterInfo` shown one filter per line."""

    def __repr__(self) -> str:
        return "[" + ",\n ".join(repr(info) for info in self) + "]"


def _info(spec: FilterSpec) -> FilterInfo:
    return FilterInfo(spec.name, spec.title, spec.category, spec.summary, spec.description, spec.params)


def list_filters() -> FilterList:
    """Every registered filter (built-ins and installed plugins), sorted by name.

    Example:
        >>> import neurofilters
        >>> "deepdream" in [f.name for f in neurofilters.list_filters()]
        True
    """
    registry = get_registry()
    return FilterList(_info(registry.filters[name]) for name in sorted(registry.filters))


def describe(name: str) -> FilterInfo:
    """The declaration of filter ``name``: title, description and parameters.

    Raises:
        RegistryError: Unknown filter (with suggestions).

    Example:
        >>> import neurofilters
        >>> neurofilters.describe("deepdream").defaults()["octaves"]
        '0'
    """
    return _info(get_registry().get_filter(name))


def load_model(name: str = "lite0") -> Any:
    """Load a model of the zoo (or a ``.keras`` file), cached for this process.

    Args:
        name: A model name (``lite0``, ``vgg16-hed`` ...; see ``neurofilters models``)
            or the path of a ``.keras`` file.

    Returns:
        The zoo's model handle (``classify``, ``layer_table``, ``feature_model`` ...).

    Raises:
        RegistryError: Unknown model.
        ModelUnavailableError: The weights cannot be loaded.
    """
    quiet_frameworks()
    return _models().get(os.fspath(name))


def apply(
    filter: str,
    image: Any,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    params: Mapping[str, Any] | None = None,
    max_pixels: int | None = None,
    **values: Any,
) -> Result:
    """Apply a filter to an image, as ``neurofilters run`` does.

    Args:
        filter: The filter's name (see :func:`list_filters`).
        image: A file path, a NumPy array (``H x W`` or ``H x W x C``, C = 1..4;
            floats in [0, 1], uint8 or uint16) or a ``PIL.Image.Image``.
        seed: Seed of the filter's randomness: the same seed gives the same bytes.
        progress: ``callback(fraction, message)``, called as the filter works.
        params: Parameter values as a mapping (for names that are not Python
            identifiers, or values kept in a dict); keyword arguments win.
        max_pixels: Largest input accepted from a file (``None``: Pillow's limit).
        **values: Parameter values by name (``steps=5``, ``layers="block5"``); the
            flag ``--class`` is ``class_`` (a Python keyword).
            Image parameters (``guide``, ``mask`` ...) take the same kinds of
            value as ``image``.

    Returns:
        A :class:`Result`: its ``pixels``, extra ``outputs``, ``summary`` and ``save()``.

    Raises:
        RegistryError: Unknown filter.
        ParameterError: An unknown parameter or an invalid value (checked
            before any model loads).
        ImageIOError: An image file cannot be read.

    Example:
        >>> import numpy as np, neurofilters
        >>> out = neurofilters.apply("deepdream", np.full((32, 32, 3), 0.5), seed=7, steps=1, octaves=1)
        >>> out.shape
        (32, 32, 3)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed > MAX_SEED:
        from .core.errors import ParameterError

        raise ParameterError(
            f'"seed" must be an integer between 0 and {MAX_SEED}. Received: seed={shown_value(seed)}',
            param="seed",
            value=seed,
        )
    spec = get_registry().get_filter(filter)
    given = {**dict(params or {}), **values}
    quiet_frameworks()  # before TensorFlow is imported: no C++ log lines in a notebook or a script's terminal
    validated = validate_params(spec.params, given)
    source = to_loaded_image(image, max_pixels=max_pixels)
    loaded = load_image_params(spec.params, validated, max_pixels=max_pixels)
    with native_stderr_silenced():  # importing the filter imports the framework, which logs straight to descriptor 2
        spec.runner()
    outputs: dict[str, Any] = {}
    summary: list[str] = []
    pixels = apply_filter(
        spec, source.pixels, loaded, seed=seed, progress=progress, models=_models(), validated=True,
        emit=outputs.__setitem__, given=validated.given,  # the keyword arguments (and params keys) count as set
        report=summary.append,
    )
    named = ([("the input", os.fspath(image))] if isinstance(image, (str, os.PathLike)) else []) + param_inputs(spec.params, validated)
    return Result(pixels, outputs, source, "\n".join(summary), tuple(named))
