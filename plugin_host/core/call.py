"""Running one filter on one image: the contract between host and filter.

The host turns whatever it loaded (grey, grey+alpha, RGB, RGBA) into the
float32 ``H x W x 3`` image in [0, 1] every filter receives, keeps alpha aside
and puts it back untouched afterwards.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from .context import FilterContext, ModelCache, OutputSink, ProgressCallback, SummarySink
from .errors import NeurofiltersError
from .params import ParamValues, validate_params
from .specs import FilterSpec

__all__ = [
    "apply_filter",
    "resolve_presets",
    "check_class_names",
    "apply_filter_batch",
    "derive_seed",
    "step_seed",
    "image_array",
    "split_alpha",
    "join_alpha",
]


def image_array(pixels: Any) -> Any:
    """``pixels`` as an ``H x W x C`` NumPy array, C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).

    A 2-D array is grey. The dtype is left as it is.

    Raises:
        NeurofiltersError: The array is not ``H x W`` or ``H x W x C`` with
            C in 1..4 and H, W >= 1.
    """
    import numpy as np

    array = np.asarray(pixels)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise NeurofiltersError(
            f"Expected an image array of shape H x W x C with C in 1..4. Received: shape={array.shape}"
        )
    return array


def split_alpha(pixels: Any) -> tuple[Any, Any | None]:
    """Split ``H x W x C`` (C = 1, 2, 3 or 4) into RGB ``H x W x 3`` and alpha ``H x W`` (or None).

    Raises:
        NeurofiltersError: The array is not an image of a supported shape.
    """
    import numpy as np

    array = image_array(pixels)
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


def derive_seed(base_seed: int, key: str) -> int:
    """A seed derived from ``base_seed`` and a label: a file's relative path, ``step2``, ``layer0``.

    The one seed rule of the host: the batch runner gives each file
    ``derive_seed(seed, relative path)``, each pipeline step after the first
    :func:`step_seed`, each XCF layer ``derive_seed(file seed, "layerN")``, so a
    file gets the same seed in every run, whatever else is in the batch.
    """
    # surrogateescape: a file name that is not UTF-8 keys its seed by its raw bytes (UTF-8 names are unchanged)
    digest = hashlib.sha256(f"{int(base_seed)}\x00{key}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def step_seed(seed: int, number: int) -> int:
    """The seed of pipeline step ``number`` (from 0) of an image whose seed is ``seed``."""
    return seed if number == 0 else derive_seed(seed, f"step{number}")


def _prepare(pixels: Any) -> tuple[Any, Any | None]:
    """The filter's input: finite RGB in [0, 1], and alpha (or None) kept aside."""
    import numpy as np

    rgb, alpha = split_alpha(pixels)
    if not np.all(np.isfinite(rgb)):
        raise NeurofiltersError("The input image contains NaN or infinite values.")
    alpha = None if alpha is None else np.clip(alpha, 0.0, 1.0).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0), alpha


def _finish(spec: FilterSpec, result: Any, alpha: Any | None) -> Any:
    """Check a filter's result and put alpha back."""
    import numpy as np

    result = np.asarray(result, dtype=np.float32)
    if result.ndim != 3 or result.shape[2] != 3:
        raise NeurofiltersError(
            f"Filter {spec.name!r} returned an array of shape {result.shape}; expected H x W x 3."
        )
    return join_alpha(np.clip(result, 0.0, 1.0), alpha)


#: A rank instead of a class name (``top-1`` ... ``top-5``): filters that explain a prediction take it;
#: ``none``: no class (an untargeted attack moves away from what the network sees).
_RANK_RE = re.compile(r"^(top-\d+|none)$")


def check_class_names(spec: FilterSpec, values: Mapping[str, Any]) -> None:
    """Check class and layer names against the model's tables before the model loads (milliseconds, no framework).

    For each ``class_label`` parameter holding a name and each ``layer`` or
    ``layers`` parameter, the filter's model (its first ``model`` parameter)
    is looked up; a model that declares ``classes`` (the zoo's ImageNet
    classifiers) resolves the class names, one that declares ``layer_names``
    (the embedded models) checks the layer names. Models without them (a
    ``.keras`` file, a downloaded application) are left to the filter.

    Raises:
        ParameterError: An unknown or ambiguous name, with suggestions;
            ``error.param`` is the parameter's name (the CLI shows its flag).
    """
    from .errors import RegistryError
    from .registry import get_registry

    names = [p for p in spec.params if p.kind == "class_label" and isinstance(values.get(p.name), str)]
    given = getattr(values, "given", None)  # layer names the user typed; a default is the filter's to explain
    layers = [p for p in spec.params if p.kind in ("layer", "layers") and values.get(p.name) is not None
              and (given is None or p.name in given)]
    model_param = next((p for p in spec.params if p.kind == "model"), None)
    if not (names or layers) or model_param is None or not isinstance(values.get(model_param.name), str):
        return
    try:
        model = get_registry().get_model(values[model_param.name])
    except RegistryError:
        return  # the filter says so, with its own message
    resolver = model.class_resolver()
    for param in names if resolver is not None else ():
        text = values[param.name].strip()
        if not _RANK_RE.match(text.lower()):
            resolver(text, param=param.name)
    checker = model.layer_checker()
    for param in layers if checker is not None else ():
        checker(values[param.name], param=param.name)


#: ``resolve_presets``'s default: take the names the user gave from ``values.given``.
_FROM_VALUES: Any = object()


def resolve_presets(
    spec: FilterSpec, values: Mapping[str, Any], given: Collection[str] | None = _FROM_VALUES
) -> dict[str, Any]:
    """``values`` with the selected preset of ``spec`` filled into the parameters the user did not give.

    The host's one preset rule (:attr:`FilterSpec.presets`): a value the user
    gave beats the preset, even one equal to the default (``--model vgg16-hed
    --chroma 1`` keeps chroma 1); every other parameter the preset names takes
    the preset's value. :func:`apply_filter` and :func:`apply_filter_batch`
    call it before the filter runs, so filters receive final values.

    Args:
        spec: The filter.
        values: Validated parameter values (every declared name present).
        given: The names the user set. Left out: ``values.given`` (``None`` for
            a plain dict). ``None`` (unknown) counts a value differing from its
            declared default as given.

    Returns:
        A new dict; ``values`` itself is not changed.

    Example:
        >>> from neurofilters.filters.deepdream.plugin import deepdream_spec
        >>> from neurofilters.plugin_host import validate_params
        >>> spec = deepdream_spec()
        >>> resolve_presets(spec, validate_params(spec.params, {"model": "vgg16-hed"}))["chroma"]
        0.15
        >>> resolve_presets(spec, validate_params(spec.params, {"model": "vgg16-hed", "chroma": 0.3}))["chroma"]
        0.3
    """
    names = getattr(values, "given", None) if given is _FROM_VALUES else given
    result = dict(values)
    result.update(spec.preset_values(result, names))
    return result


def _check_loaded(spec: FilterSpec, params: Mapping[str, Any]) -> None:
    import numpy as np

    for param in spec.params:
        value = params.get(param.name)
        if param.kind == "image" and value is not None and not isinstance(value, np.ndarray):
            raise NeurofiltersError(
                f"Image parameter {param.name!r} reached the filter unloaded ({type(value).__name__}); "
                "front ends load image parameters with imageio.values.load_image_params first."
            )


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
    emit: OutputSink | None = None,
    given: Iterable[str] | None = None,
    report: SummarySink | None = None,
) -> Any:
    """Validate parameters, run ``spec`` on ``pixels`` and return the result.

    Front ends call :func:`neurofilters.plugin_host.front.run`, which validates,
    loads the image parameters and calls this. The filter's presets are
    resolved here (:func:`resolve_presets`), so the filter receives final values.

    Args:
        spec: The filter.
        pixels: float32 ``H x W x C`` in [0, 1], C = 1 (grey), 2 (grey+alpha),
            3 (RGB) or 4 (RGBA).
        values: User parameter values (missing ones take their defaults), or
            :class:`~.params.ParamValues` the host loaded
            (:func:`~neurofilters.plugin_host.imageio.values.load_image_params`),
            taken as they are, with the names the user gave (``values.given``).
        seed: Seed for the filter's randomness.
        progress: ``callback(fraction, message)``.
        models: A model cache to reuse between calls.
        context: A ready context (overrides ``seed``, ``progress``, ``models``, ``emit`` and ``report``).
        validated: Deprecated (loaded ``ParamValues`` say so themselves):
            ``values`` already went through :func:`validate_params`.
        emit: ``sink(name, pixels)`` for the filter's extra outputs.
        report: ``sink(line)`` for each line of the run's summary as the filter reports it.
        given: Deprecated (``ParamValues.given`` carries it): the parameters
            the user set explicitly (``context.given``), overriding what
            ``values`` says. Without it: ``values.given`` for ``ParamValues``,
            the keys of ``values`` when this call validates them, else unknown
            (``None``).

    Returns:
        float32 ``h x w x 3`` (or ``x 4`` when the input had alpha and the size
        was kept) in [0, 1].

    Raises:
        ParameterError: A parameter is invalid.
        NeurofiltersError: The filter failed in a way it explained.
    """
    names: Iterable[str] | None
    if isinstance(values, ParamValues) and values.loaded:
        params, names = dict(values), values.given
    elif validated:
        params, names = dict(values or {}), getattr(values, "given", None)
    else:
        checked = validate_params(spec.params, values or {})
        params, names = dict(checked), checked.given
    if given is not None:
        names = given
    params = resolve_presets(spec, params, names)
    _check_loaded(spec, params)
    check_class_names(spec, params)
    rgb, alpha = _prepare(pixels)
    if context is None:
        context = FilterContext(seed=seed, progress=progress, models=models, emit=emit, given=names, report=report)
    elif names is not None:
        context.given = frozenset(names)
    context.alpha = alpha
    result = _finish(spec, spec.runner()(rgb, params, context), alpha)
    context.progress(1.0, "done")
    return result


def apply_filter_batch(
    spec: FilterSpec,
    images: Sequence[Any],
    values: Mapping[str, Any],
    *,
    seeds: Sequence[int],
    models: ModelCache,
    progress: ProgressCallback | None = None,
    emits: Sequence[OutputSink | None] | None = None,
    given: Iterable[str] | None = None,
    reports: Sequence[SummarySink | None] | None = None,
) -> list[Any]:
    """:func:`apply_filter` for several images of one shape at once, through ``spec.batch_run``.

    Args:
        spec: A filter that declares ``batch_run``.
        images: float32 ``H x W x C`` arrays of one shape (C = 1..4), in [0, 1].
        values: The loaded :class:`~.params.ParamValues` shared by the images
            (:func:`~neurofilters.plugin_host.imageio.values.load_image_params`).
        seeds: One seed per image.
        models: The process's model cache.
        progress: ``callback(fraction, message)`` for the whole batch.
        emits: One extra-output sink per image (or None).
        reports: One summary sink per image (or None).
        given: Deprecated (``values.given`` carries it): the parameters the
            user set explicitly, overriding ``values.given``.

    Returns:
        One result per image, as :func:`apply_filter` returns it.

    Raises:
        NeurofiltersError: An image is not finite, or the filter broke its contract.
    """
    batch_run = spec.batch_runner()
    if batch_run is None:
        raise NeurofiltersError(f"Filter {spec.name!r} declares no batch_run; run its images one by one.")
    _check_loaded(spec, values)
    sinks = list(emits) if emits is not None else [None] * len(images)
    summaries = list(reports) if reports is not None else [None] * len(images)
    names = given if given is not None else getattr(values, "given", None)
    params = resolve_presets(spec, values, names)
    colours, alphas, contexts = [], [], []
    for index, (pixels, seed) in enumerate(zip(images, seeds, strict=True)):
        rgb, alpha = _prepare(pixels)
        context = FilterContext(
            seed=seed, progress=progress if index == 0 else None, models=models, emit=sinks[index], given=names,
            report=summaries[index],
        )
        context.alpha = alpha
        colours.append(rgb)
        alphas.append(alpha)
        contexts.append(context)
    results = list(batch_run(colours, params, contexts))
    if len(results) != len(colours):
        raise NeurofiltersError(
            f"Filter {spec.name!r}: batch_run returned {len(results)} images for {len(colours)}; expected one per image."
        )
    outputs = [_finish(spec, result, alpha) for result, alpha in zip(results, alphas)]
    contexts[0].progress(1.0, "done")
    return outputs
