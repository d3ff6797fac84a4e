"""The DeepDream algorithm: objectives, octaves, whole-image or tiled gradient ascent, masks and frames.

One engine covers the three reference implementations (their settings are the presets of
:mod:`~neurofilters.filters.deepdream.plugin`):
Google's notebook (detail re-injection, jitter, mean |g| normalisation, guided
dreams), the TensorFlow tutorial (random roll, std normalisation, octaves above
the image size, no re-injection) and the Keras example (weighted layers,
squared-activation loss, loss ceiling).

Speed: the network is a clone prepared for input gradients (batch norms folded,
see :mod:`neurofilters.filters.gradients`), its gradient step is traced once for every
image size, and an octave that fits the memory budget is differentiated whole
in one call (the random roll happens inside that call). Larger octaves are cut
into the fewest equally sized windows the budget allows (see
:mod:`neurofilters.filters.tiling`); every pixel's gradient is computed at every step, with
real image context around each window's core, so there are no seams.

Memory: besides the network's activations (bounded by ``memory_mb``) the
full-size buffers are the input image, the octave image being dreamed and its
gradient; octave changes and detail re-injection work in place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from neurofilters.plugin_host import FilterContext, ParameterError, split_alpha

from .. import tiling
from ..octaves import octave_shapes, resize_image
from ..smoothing import feather_inward, gaussian_blur, laplacian_normalize
from .plugin import PARAMS

__all__ = [
    "DreamSettings",
    "DreamState",
    "OctaveProgress",
    "ascend",
    "auto_octaves",
    "budget_pixels",
    "build_objective",
    "dream",
    "dream_schedule",
    "jitter_shift",
    "min_size_of",
    "objective_value",
    "plan_window",
    "run",
    "settings_from_params",
    "stops_early",
    "tiled_gradient",
    "with_settings",
]

_DEFAULTS = {param.name: param.default for param in PARAMS}
#: Context kept around each tile's core (pixels of the octave image).
TILE_MARGIN = 32
#: Safety factor on the activation-memory estimate of one gradient call
#: (measured peaks: Lite0 ~0.75 of the estimate, VGG16 ~0.8).
_MEMORY_FACTOR = 1.0


@dataclass(frozen=True)
class DreamSettings:
    """Validated, preset-resolved settings of one dream.

    Every field is a parameter of :data:`~neurofilters.filters.deepdream.plugin.PARAMS`
    and takes its declared default from there (checked below), so a default
    is written once, in the declaration.
    """

    model: str = _DEFAULTS["model"]
    layers: tuple[tuple[str, float], ...] = _DEFAULTS["layers"]
    objective: str = _DEFAULTS["objective"]
    channel: int = _DEFAULTS["channel"]
    loss: str = _DEFAULTS["loss"]
    relu6: str = _DEFAULTS["relu6"]
    precision: str = _DEFAULTS["precision"]
    octaves: int = _DEFAULTS["octaves"]
    octave_scale: float = _DEFAULTS["octave_scale"]
    upscale_octaves: int = _DEFAULTS["upscale_octaves"]
    detail: bool = _DEFAULTS["detail"]
    steps: int = _DEFAULTS["steps"]
    step_size: float = _DEFAULTS["step_size"]
    normalize: str = _DEFAULTS["normalize"]
    jitter: int = _DEFAULTS["jitter"]
    smoothing: str = _DEFAULTS["smoothing"]
    smoothing_sigma: float = _DEFAULTS["smoothing_sigma"]
    chroma: float = _DEFAULTS["chroma"]
    loss_ceiling: float = _DEFAULTS["loss_ceiling"]
    clip: bool = _DEFAULTS["clip"]
    tile_size: int = _DEFAULTS["tile_size"]
    memory_mb: int = _DEFAULTS["memory_mb"]
    guide: np.ndarray | None = field(default=None, compare=False, repr=False)


if not {name for name in DreamSettings.__dataclass_fields__} <= set(_DEFAULTS):  # pragma: no cover - a coding error
    raise RuntimeError("DreamSettings has a field that PARAMS does not declare")


def _grey(pixels: np.ndarray) -> np.ndarray:
    """float32 ``H x W`` in [0, 1] from loaded pixels (C = 1..4): luminance times alpha."""
    pixels = np.asarray(pixels, np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    colour = pixels[:, :, : 3 if channels >= 3 else 1]
    grey = colour[:, :, 0] if colour.shape[2] == 1 else colour @ np.float32([0.299, 0.587, 0.114])
    return grey * pixels[:, :, -1] if channels in (2, 4) else grey


def settings_from_params(params: Mapping[str, Any]) -> DreamSettings:
    """Turn validated filter parameters (presets already resolved by the host) into settings."""
    names = {f.name for f in DreamSettings.__dataclass_fields__.values()} - {"guide"}
    values = {name: params[name] for name in names if name in params}
    guide = None if params.get("guide") is None else split_alpha(params["guide"])[0]
    return DreamSettings(**values, guide=guide)


# --------------------------------------------------------------------------- objective
def _resolve_layers(model: Any, layers: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    if tuple(layers) == (("auto", 1.0),):
        if not model.default_dream_layers:
            raise _no_dream_layers(model)
        return tuple((str(n), float(w)) for n, w in model.default_dream_layers)
    try:
        resolved = tuple((model.resolve_layer(name), float(weight)) for name, weight in layers)
    except ParameterError as error:
        text = str(error).replace('"layer"', '"layers"', 1).replace("Received: layer=", "Received: layers=", 1)
        raise ParameterError(text, param="layers", value=error.value) from None
    if all(weight == 0 for _, weight in resolved):
        raise ParameterError(
            f'"layers" needs at least one non-zero weight. Received: layers={layers}', param="layers", value=layers
        )
    return resolved


def _no_dream_layers(model: Any) -> ParameterError:
    """The error for ``--layers auto`` on a model that recommends no layer (a user's ``.keras`` file names none)."""
    spatial = [info.name for info in model.layer_table(224) if len(info.output_shape) == 4 and info.kind != "InputLayer"]
    example = ",".join(f"{name}:1" for name in spatial[-2:]) or "LAYER:1"
    return ParameterError(
        f'"layers" is auto, but model {model.name!r} recommends no dream layers (a .keras file names none unless '
        f"neurofilters finetune wrote it). Received: layers=auto; name the layers to amplify, e.g. --layers {example} "
        f"(its convolutional layers: 'neurofilters layers {model.name}').",
        param="layers",
        value="auto",
    )


def _check_channel(settings: DreamSettings, names: Sequence[str], model: Any) -> None:
    if settings.objective == "layer" or settings.guide is not None:
        return
    shapes = {info.name: info.output_shape for info in model.layer_table(224)}
    for name in names:
        channels = int(shapes[name][-1])
        if settings.channel >= channels:
            raise ParameterError(
                f'"channel" must be below {channels}, the number of channels of layer {name!r}. '
                f"Received: channel={settings.channel}",
                param="channel",
                value=settings.channel,
            )


def _guide_features(features: Any, guide: np.ndarray, max_side: int = 384) -> list[np.ndarray]:
    """Per layer, the guide image's feature vectors as ``(positions, channels)``."""
    height, width = guide.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor < 1.0:
        guide = resize_image(guide, (max(1, round(height * factor)), max(1, round(width * factor))))
    outputs = features(guide[None].astype(np.float32), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(o)).reshape(-1, o.shape[-1]).astype(np.float32) for o in outputs]


def _border(size: Any, width: int = 2) -> Any:
    """Border to drop from a spatial side (static int, or a tensor in a shape-generic graph)."""
    if isinstance(size, (int, np.integer)):
        return width if size > 2 * width else 0
    from keras import ops

    return ops.cast(ops.greater(size, 2 * width), "int32") * width


def _make_loss_fn(settings: DreamSettings, weights: Sequence[float], guides: Sequence[np.ndarray] | None) -> Any:
    """The per-sample objective, written with ``keras.ops`` (any backend, any input size)."""
    from keras import ops

    def loss_fn(outputs: Sequence[Any]) -> Any:
        total = None
        for index, (activation, weight) in enumerate(zip(outputs, weights)):
            if weight == 0:
                continue
            if guides is not None:
                # Google's "controlled dream": match every position to the guide feature
                # with the largest dot product and pull toward it (gradient = that feature).
                guide = ops.convert_to_tensor(guides[index])
                channels = guide.shape[-1]
                flat = ops.reshape(activation, (ops.shape(activation)[0], -1, channels))
                scores = ops.einsum("bpc,gc->bpg", flat, guide)
                matched = ops.take(guide, ops.argmax(scores, axis=-1), axis=0)
                term = ops.mean(ops.sum(flat * ops.stop_gradient(matched), axis=-1), axis=1)
            elif settings.objective == "neuron":
                height, width = ops.shape(activation)[1], ops.shape(activation)[2]
                term = activation[:, height // 2, width // 2, settings.channel]
                if settings.loss == "mean-square":
                    term = ops.square(term)
            else:
                if settings.objective == "channel":
                    activation = activation[..., settings.channel : settings.channel + 1]
                if settings.loss == "mean":
                    term = ops.mean(activation, axis=(1, 2, 3))
                else:
                    shape = ops.shape(activation)
                    size = ops.cast(shape[1] * shape[2] * shape[3], activation.dtype)
                    top, left = _border(shape[1]), _border(shape[2])
                    inner = activation[:, top : shape[1] - top, left : shape[2] - left, :]
                    term = ops.sum(ops.square(inner), axis=(1, 2, 3)) / size
            term = weight * term
            total = term if total is None else total + term
        return total

    return loss_fn


@dataclass
class _Objective:
    """A compiled objective on one model: gradient function and memory figures.

    Attributes:
        gradient: ``fn(batch, shift) -> (losses, gradients)`` (see :mod:`neurofilters.filters.gradients`).
        features: The feature model the gradient differentiates.
        names: Raw target layer names.
        bytes_per_pixel: Estimated peak activation memory of one call, per input pixel.
        neuron: Only the centre neuron matters (the window around it is enough).
        stride: Total stride of the deepest target layer (tile alignment).
        batch_exact: ``(count, height, width) -> bool``: whether one call on that
            many images of that size was found to give every image exactly its
            single-image result (filled by :mod:`neurofilters.filters.deepdream.batched`).
    """

    gradient: Any
    features: Any
    names: tuple[str, ...]
    bytes_per_pixel: float
    neuron: bool = False
    stride: int = 1
    batch_exact: dict[tuple[int, int, int], bool] = field(default_factory=dict, repr=False, compare=False)


_OBJECTIVE_CACHE: dict[tuple[Any, ...], _Objective] = {}


def _target_stride(model: Any, names: Sequence[str]) -> int:
    """Total stride of the deepest target layer (input side / output side), a power of two."""
    try:
        strides = []
        for info in model.layer_table(224):
            if info.name in names and len(info.output_shape) == 4 and info.output_shape[1]:
                strides.append(2 ** round(math.log2(224.0 / float(info.output_shape[1]))))
        return max(strides) if strides else 1
    except Exception:  # an estimate only: unaligned tiles are still correct, just less exact
        return 1


def _activation_bytes_per_pixel(model: Any, names: Sequence[str], value_bytes: int = 4) -> float:
    """Peak activation memory of one gradient call per input pixel, estimated from the layer table.

    Kept for the backward pass: every layer output up to the deepest target,
    except batch norms and convolutions whose output only feeds an activation
    or a batch norm (fused or folded away), plus two gradient buffers of the
    largest layer, ``value_bytes`` per value (2 in bfloat16). Measured peaks
    are 0.75-0.8 of this figure on the embedded models (float32).
    """
    try:
        side = 224.0
        table = model.layer_table(224)
        deepest = max(i for i, info in enumerate(table) if info.name in names)
        kept, largest = 0.0, 3.0
        inputs = 3.0  # the input and its rolled copy (float32 in any precision)
        for index, info in enumerate(table[: deepest + 1]):
            shape = [d for d in info.output_shape if d is not None] if info.output_shape else []
            if len(shape) < 3:
                continue
            floats = float(np.prod(shape[-3:])) / (side * side)
            largest = max(largest, floats)
            following = table[index + 1].kind if index + 1 < len(table) else ""
            if info.kind == "BatchNormalization":
                continue
            if info.kind in ("Conv2D", "DepthwiseConv2D") and following in ("BatchNormalization", "ReLU", "Activation"):
                continue
            kept += floats
        return 4.0 * inputs + value_bytes * (kept + 2.0 * largest)
    except Exception:  # the table is an estimate's input only; fall back to a safe figure
        return 2048.0


def build_objective(model: Any, settings: DreamSettings, loss_fn: Any = None) -> _Objective:
    """Resolve layers, check the channel, compile the gradient function (cached without guide).

    Args:
        model: A zoo model handle.
        settings: The dream's settings.
        loss_fn: Optional objective hook: ``loss_fn(outputs) -> (B,)`` on the outputs of
            ``settings.layers`` (``keras.ops``), used instead of the layer objective
            (the ``hallucinate`` filter's class objective on ``logits``). Cached by identity.

    Returns:
        The compiled objective.

    Raises:
        ParameterError: Unknown layer, channel out of range, all weights zero.
    """
    from ..gradients import gradient_feature_model, make_gradient_fn, resolve_precision

    layers = _resolve_layers(model, settings.layers)
    names = tuple(name for name, _ in layers)
    weights = tuple(weight for _, weight in layers)
    precision = resolve_precision(settings.precision, model)
    key = (id(model), model.name, layers, settings.objective, settings.channel, settings.loss, settings.relu6, precision, loss_fn)
    if settings.guide is None and key in _OBJECTIVE_CACHE:
        return _OBJECTIVE_CACHE[key]
    _check_channel(settings, names, model)
    # max_pixels=0: no convolution is banded (filters/zoo/banded.py); the gradient step holds the weights as constants,
    # and oneDNN's direct convolution then has no scratch cap to cross.
    features = gradient_feature_model(model, list(names), relu6=settings.relu6, precision=precision, max_pixels=0)
    guides = _guide_features(features, settings.guide) if settings.guide is not None else None
    objective = _Objective(
        make_gradient_fn(features, loss_fn or _make_loss_fn(settings, weights, guides)),
        features,
        names,
        _MEMORY_FACTOR * _activation_bytes_per_pixel(model, names, 2 if precision == "bfloat16" else 4),
        neuron=settings.objective == "neuron" and settings.guide is None,
        stride=_target_stride(model, names),
    )
    if settings.guide is None:
        if len(_OBJECTIVE_CACHE) > 16:
            _OBJECTIVE_CACHE.clear()
        _OBJECTIVE_CACHE[key] = objective
    return objective


# --------------------------------------------------------------------------- stepping
def budget_pixels(settings: DreamSettings, objective: _Objective) -> int:
    """How many input pixels one gradient call may hold within ``memory_mb`` (and ``tile_size``).

    Args:
        settings: ``memory_mb`` and ``tile_size``.
        objective: Gives the activation memory per pixel.

    Returns:
        The pixel budget of one call (at least ``(4 * TILE_MARGIN) ** 2``).
    """
    max_pixels = max(int(settings.memory_mb * 2**20 / objective.bytes_per_pixel), (4 * TILE_MARGIN) ** 2)
    if settings.tile_size:
        side = max(4 * TILE_MARGIN, settings.tile_size)
        max_pixels = min(max_pixels, side * side)
    return max_pixels


def plan_window(settings: DreamSettings, objective: _Objective, height: int, width: int) -> tuple[int, int]:
    """The window the network sees at one octave: the whole image if it fits the budget.

    Args:
        settings: ``tile_size`` (a hard cap on the window side) and ``memory_mb``.
        objective: Gives the memory per pixel, the stride and the objective kind.
        height: Octave height.
        width: Octave width.

    Returns:
        ``(window_height, window_width)``; equal to ``(height, width)`` for a
        whole-image pass.
    """
    max_pixels = budget_pixels(settings, objective)
    if settings.tile_size:
        side = max(4 * TILE_MARGIN, settings.tile_size)
        if height <= side and width <= side:
            return height, width
        return tiling.window_shape_for_budget(
            height, width, max_pixels, margin=TILE_MARGIN, align=objective.stride, max_side=side
        )
    if objective.neuron:
        side = max(4 * TILE_MARGIN, int(math.sqrt(max_pixels)))
        return min(height, side), min(width, side)
    return tiling.window_shape_for_budget(height, width, max_pixels, margin=TILE_MARGIN, align=objective.stride)


def tiled_gradient(
    image: np.ndarray,
    objective: _Objective,
    window: tuple[int, int],
    shift: tuple[int, int] = (0, 0),
    out: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Objective value and input gradient of an image of any size: whole, or window by window.

    Args:
        image: float32 ``H x W x 3``.
        objective: From :func:`build_objective`.
        window: Window shape; ``(H, W)`` differentiates the whole image in one call.
        shift: Roll ``(dy, dx)`` applied to the image before the network sees it.
        out: Optional float32 ``H x W x 3`` buffer for the gradient (tiled case).

    Returns:
        ``(loss, gradient)``: the loss (area-weighted over the windows) and the
        gradient of the mean objective in the unrolled frame.
    """
    height, width = image.shape[:2]
    if objective.neuron:
        # One neuron at the image centre: only the window around it matters.
        top, left = max(0, (height - window[0]) // 2), max(0, (width - window[1]) // 2)
        box = (top, top + window[0], left, left + window[1])
        tile = tiling.Tile(box, box)
        gradient = np.zeros_like(image) if out is None else out
        if out is not None:
            gradient.fill(0.0)
        losses, grads = objective.gradient(tiling.read_window(image, tile, shift)[None])
        tiling.write_core(gradient, tile, grads[0], shift)
        return float(losses[0]), gradient
    if tuple(window) == (height, width):
        losses, grads = objective.gradient(image[None], shift)
        return float(losses[0]), grads[0]
    tiles = tiling.plan_tiles(height, width, window, TILE_MARGIN, objective.stride)
    gradient = np.empty_like(image) if out is None else out
    loss = 0.0
    for tile in tiles:
        losses, grads = objective.gradient(tiling.read_window(image, tile, shift)[None])
        # Each window's loss is a mean over the window: rescale its gradient so the
        # pieces add up to the gradient of the mean over the whole image.
        window_result = grads[0]
        if len(tiles) > 1:
            window_result *= np.float32(tile.window_area / (height * width))
        tiling.write_core(gradient, tile, window_result, shift)
        loss += float(losses[0]) * tile.core_area / (height * width)
    return loss, gradient


def _limit_chroma(gradient: np.ndarray, chroma: float) -> np.ndarray:
    """Keep the gradient's brightness part, scale its colour part by ``chroma`` (in place).

    Brightness is the mean over R, G, B; colour is what remains. ``chroma = 1``
    leaves the gradient unchanged, ``0`` dreams in brightness only.
    """
    if chroma == 1.0:
        return gradient
    brightness = gradient.mean(axis=2, keepdims=True)
    brightness *= np.float32(1.0 - chroma)
    gradient *= np.float32(chroma)
    gradient += brightness
    return gradient


#: Elements per block when computing a gradient's scale: float32 sums over a
#: block, float64 across blocks (accurate, deterministic, no full-size temporaries).
_BLOCK = 1 << 16


def _normalise(gradient: np.ndarray, mode: str, mask: np.ndarray | None) -> float:
    """The gradient's scale (std or mean |g|) over the pixels the mask lets through."""
    height = gradient.shape[0]
    rows = max(1, _BLOCK // max(1, gradient[0].size))
    count, total, squares = 0, 0.0, 0.0
    for top in range(0, height, rows):
        block = gradient[top : top + rows]
        block = block.reshape(-1) if mask is None else block[mask[top : top + rows] > 0].reshape(-1)
        count += block.size
        if mode == "std":
            total += float(block.sum())
            squares += float(np.einsum("i,i->", block, block))
        else:
            total += float(np.abs(block).sum())
    if count == 0:
        return 1.0
    mean = total / count
    scale = math.sqrt(max(squares / count - mean * mean, 0.0)) if mode == "std" else mean
    return scale + 1e-8


def jitter_shift(rng: np.random.Generator, settings: DreamSettings, height: int, width: int) -> tuple[int, int]:
    """The random roll ``(dy, dx)`` of one step (two draws from ``rng``; none without jitter)."""
    if not settings.jitter:
        return (0, 0)
    return (
        int(rng.integers(-settings.jitter, settings.jitter + 1)) % height,
        int(rng.integers(-settings.jitter, settings.jitter + 1)) % width,
    )


def ascend(image: np.ndarray, gradient: np.ndarray, settings: DreamSettings, mask: np.ndarray | None) -> None:
    """One gradient-ascent step on ``image``, in place: chroma, smoothing, mask, normalisation, clip.

    Args:
        image: float32 ``H x W x 3`` octave image (changed in place).
        gradient: Its gradient (used as a scratch buffer: changed too).
        settings: Step size, normalisation, smoothing, chroma and clipping.
        mask: Optional octave-size mask (1 = dream, 0 = keep).
    """
    gradient = _limit_chroma(gradient, settings.chroma)
    if settings.smoothing == "gaussian":
        gradient = gaussian_blur(gradient, settings.smoothing_sigma, out=gradient)
    elif settings.smoothing == "laplacian":
        gradient = laplacian_normalize(gradient)
    if mask is not None:
        gradient *= mask[:, :, None]
    gradient *= np.float32(settings.step_size / _normalise(gradient, settings.normalize, mask))
    image += gradient
    del gradient
    if settings.clip:
        np.clip(image, 0.0, 1.0, out=image)


def stops_early(settings: DreamSettings, loss: float) -> bool:
    """Whether an octave ends after a step with this loss (``loss_ceiling``)."""
    return bool(settings.loss_ceiling and loss > settings.loss_ceiling)


def _dream_octave(
    image: np.ndarray,
    objective: _Objective,
    settings: DreamSettings,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    report: Callable[[int, float], None],
) -> float:
    """Gradient ascent at one scale, in place on ``image``. Returns the last loss."""
    height, width = image.shape[:2]
    window = plan_window(settings, objective, height, width)
    buffer = None if tuple(window) == (height, width) and not objective.neuron else np.empty_like(image)
    loss = 0.0
    for step in range(settings.steps):
        shift = jitter_shift(rng, settings, height, width)
        loss, gradient = tiled_gradient(image, objective, window, shift, out=buffer)
        ascend(image, gradient, settings, mask)
        del gradient
        report(step + 1, loss)
        if stops_early(settings, loss):
            break
    return loss


def _working_size(height: int, width: int, min_size: int) -> tuple[int, int]:
    """A size at least ``min_size`` on the shorter side (tiny images are dreamed enlarged)."""
    if min(height, width) >= min_size:
        return height, width
    factor = min_size / min(height, width)
    return max(min_size, math.ceil(height * factor)), max(min_size, math.ceil(width * factor))


def _resized(image: np.ndarray, shape: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """``image`` itself if it already has ``shape``, else a resized copy."""
    return image if image.shape[:2] == tuple(shape) else resize_image(image, shape, method)


def min_size_of(model: Any) -> int:
    """The smallest image side the model takes (smaller images are dreamed enlarged)."""
    return int(getattr(model, "min_size", 32) or 32)


#: ``octaves=0`` (auto): the smallest octave's longer side is about this times the square
#: root of the image's longer side, so the largest patterns grow with the picture, but more
#: slowly than it (chosen from ``docs/make_deepdream_defaults_sheet.py``'s contact sheets).
AUTO_OCTAVE_FACTOR = 12.0


def auto_octaves(height: int, width: int, scale: float) -> int:
    """The number of octaves ``octaves=0`` means for an ``height x width`` image.

    The smallest octave's longer side is about ``AUTO_OCTAVE_FACTOR * sqrt(side)``
    (``side`` = the image's longer side): with scale 1.4, 2 octaves at 300 px, 4 at
    1000 px, 6 at 3000 px. Fewer octaves keep small pictures (faces) recognisable;
    more let the patterns grow on large ones.

    Args:
        height: Image height.
        width: Image width.
        scale: Size ratio between neighbouring octaves (> 1).

    Returns:
        An octave count between 1 and 12.
    """
    side = max(height, width, 1)
    ratio = side / (AUTO_OCTAVE_FACTOR * math.sqrt(side))
    if ratio <= 1.0:
        return 1
    return int(min(12, max(1, 1 + round(math.log(ratio) / math.log(scale)))))


def dream_schedule(height: int, width: int, settings: DreamSettings, min_size: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The working size of an ``height x width`` image and its octave sizes, smallest first."""
    work_shape = _working_size(height, width, min_size)
    shapes = octave_shapes(
        work_shape[0],
        work_shape[1],
        settings.octaves or auto_octaves(height, width, settings.octave_scale),
        settings.octave_scale,
        upscale_octaves=settings.upscale_octaves,
        min_size=min_size,
    )
    return work_shape, shapes


class DreamState:
    """One image on its way through the octaves: everything but the gradient steps.

    The single-image :func:`dream` and the batched path
    (:mod:`neurofilters.filters.deepdream.batched`) share it, so both do exactly the same
    arithmetic around the steps: start an octave (:meth:`begin_octave`), run
    the steps on :attr:`current` with :attr:`octave_mask`, end it
    (:meth:`end_octave`), and after the last octave take :meth:`finish`.
    """

    def __init__(self, image: np.ndarray, mask: np.ndarray | None, settings: DreamSettings, min_size: int) -> None:
        """Prepare ``image`` (not modified) and ``mask`` at the working size."""
        self.settings = settings
        self.base = np.asarray(image, dtype=np.float32)
        self.mask = mask
        height, width = self.base.shape[:2]
        self.work_shape, self.shapes = dream_schedule(height, width, settings, min_size)
        self.work = _resized(self.base, self.work_shape)
        self.work_mask: np.ndarray | None = None
        if mask is not None:
            self.work_mask = np.clip(_resized(np.asarray(mask, np.float32), self.work_shape, "bilinear"), 0.0, 1.0)
        #: The octave image being dreamed (after :meth:`begin_octave`).
        self.current: np.ndarray | None = None
        #: The mask at the current octave's size, or ``None``.
        self.octave_mask: np.ndarray | None = None
        self._octave_base: np.ndarray | None = None

    def begin_octave(self, shape: tuple[int, int]) -> np.ndarray:
        """Carry the dream to the octave size ``shape``; return :attr:`current` (dream it in place)."""
        settings = self.settings
        self.octave_mask = None
        if self.work_mask is not None:
            octave_mask = self.work_mask if shape == self.work_shape else resize_image(self.work_mask, shape, "bilinear")
            self.octave_mask = np.clip(octave_mask, 0.0, 1.0)  # may be a read-only view of the caller's mask
        self._octave_base = None
        if settings.detail:
            self._octave_base = _resized(self.work, shape)
            if self.current is None:
                self.current = self._octave_base.copy()
            else:
                # ``current`` holds the detail dreamed so far: carry it to this size.
                self.current = resize_image(self.current, shape)
                self.current += self._octave_base
                if settings.clip:
                    np.clip(self.current, 0.0, 1.0, out=self.current)
        elif self.current is None:
            self.current = resize_image(self.work, shape) if self.work.shape[:2] != shape else self.work.copy()
        elif self.current.shape[:2] != shape:
            self.current = resize_image(self.current, shape)
        return self.current

    def end_octave(self) -> None:
        """Keep only the dreamed detail (with detail re-injection) before the next octave."""
        if self._octave_base is not None:
            assert self.current is not None
            self.current -= self._octave_base  # now the detail
            self._octave_base = None
        self.octave_mask = None

    def finish(self) -> np.ndarray:
        """The dreamed image at the input's size, blended with the input outside the mask."""
        current = self.current
        assert current is not None, "finish() needs at least one octave"
        height, width = self.base.shape[:2]
        if current.shape[:2] != self.work_shape:
            current = resize_image(current, self.work_shape)
        if self.settings.detail:
            current += self.work
        result = current if self.work_shape == (height, width) else resize_image(current, (height, width))
        np.clip(result, 0.0, 1.0, out=result)
        if self.mask is not None:
            keep = np.asarray(self.mask, np.float32)[:, :, None]
            # mask * result + (1 - mask) * base; where the mask is 0 this adds 0 to base: exactly base.
            result -= self.base
            result *= keep
            result += self.base
        self.current = None
        return result


#: A dream expected to take at least this many seconds says so in its progress messages.
LONG_DREAM_S = 20.0


def _duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min"``, ``"1 h 20 min"``: a rough, readable duration."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60)} min"


class OctaveProgress:
    """Progress over the octaves of a dream: each octave weighs its area times the steps.

    It also estimates the whole dream's duration from the first timed step (the
    second step of the smallest octave: the first one may include tracing), and
    when that is at least :data:`LONG_DREAM_S` every later message ends with it
    ("about 2 min in all"), so a long dream says so within its first few percent.
    Timing only changes messages, never pixels.
    """

    def __init__(
        self, shapes: Sequence[tuple[int, int]], settings: DreamSettings, progress: Callable[[float, str], None] | None
    ) -> None:
        """Weigh ``shapes``; report to ``progress(fraction, message)`` (or nowhere)."""
        self.shapes = list(shapes)
        self.steps = settings.steps
        self.progress = progress
        self.areas = [h * w for h, w in self.shapes]
        self.total = float(sum(self.areas) * self.steps)
        self.done = 0.0
        #: Expected seconds for the whole dream (``None`` until a step was timed).
        self.expected_s: float | None = None
        self._start = time.perf_counter()
        self._last: float | None = None
        if progress is not None:
            # The model is loaded and the step compiled: the progress bar's ETA starts here.
            progress(0.0, f"octave 1/{len(self.shapes)}")

    def _estimate(self, area: float, work_done: float) -> None:
        """Time the step just finished (``area`` pixels) and extrapolate to the remaining work."""
        now = time.perf_counter()
        if self.expected_s is None and self._last is not None:
            per_pixel = (now - self._last) / max(area, 1.0)
            self.expected_s = (now - self._start) + per_pixel * (self.total - work_done)
        self._last = now

    def reporter(self, index: int) -> Callable[[int, float], None]:
        """``report(step, loss)`` for octave ``index``."""

        def report(step: int, loss: float) -> None:
            work_done = self.done + self.areas[index] * step
            self._estimate(self.areas[index], work_done)
            if self.progress is not None:
                fraction = work_done / self.total
                message = f"octave {index + 1}/{len(self.shapes)}, step {step}/{self.steps}, loss {loss:.4g}"
                if self.expected_s is not None and self.expected_s >= LONG_DREAM_S:
                    message += f"; about {_duration(self.expected_s)} in all"
                self.progress(0.98 * fraction, message)

        return report

    def octave_done(self, index: int) -> None:
        """Count octave ``index`` as complete (even if it stopped early)."""
        self.done += self.areas[index] * self.steps


def dream(
    image: np.ndarray,
    model: Any,
    settings: DreamSettings,
    *,
    rng: np.random.Generator,
    mask: np.ndarray | None = None,
    progress: Callable[[float, str], None] | None = None,
    loss_fn: Any = None,
) -> np.ndarray:
    """Dream one image.

    Args:
        image: float32 ``H x W x 3`` in [0, 1] (any size, down to 1 x 1); not modified.
        model: A zoo model handle.
        settings: Dream settings.
        rng: Source of the jitter rolls.
        mask: Optional float ``H x W`` in [0, 1]: 1 = dream, 0 = keep (exactly).
        progress: ``progress(fraction, message)`` (e.g. ``context.progress``).
        loss_fn: Optional objective hook (see :func:`build_objective`).

    Returns:
        The dreamed float32 ``H x W x 3`` image (a new array).
    """
    objective = build_objective(model, settings, loss_fn)
    state = DreamState(image, mask, settings, min_size_of(model))
    octaves = OctaveProgress(state.shapes, settings, progress)
    for index, shape in enumerate(state.shapes):
        current = state.begin_octave(shape)
        _dream_octave(current, objective, settings, state.octave_mask, rng, octaves.reporter(index))
        octaves.octave_done(index)
        state.end_octave()
    return state.finish()


def objective_value(image: np.ndarray, model: Any, settings: DreamSettings) -> float:
    """The objective (as the gradient steps see it) on a whole image, untiled: for tests and docs."""
    objective = build_objective(model, settings)
    losses, _ = objective.gradient(np.asarray(image, np.float32)[None])
    return float(losses[0])


# --------------------------------------------------------------------------- filter entry
def _load_mask(params: Mapping[str, Any], shape: tuple[int, int], alpha: np.ndarray | None) -> np.ndarray | None:
    """The dream mask: the mask file and/or the image's alpha, inverted and feathered as asked."""
    mask = None
    if params.get("mask") is not None:
        mask = _grey(params["mask"])
        if mask.shape != shape:
            mask = np.clip(resize_image(mask, shape, "bilinear"), 0.0, 1.0)
    if params.get("mask_invert") and mask is not None:
        mask = 1.0 - mask
    if params.get("mask_alpha") and alpha is not None:
        alpha = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)
        if alpha.shape != shape:
            raise ParameterError(
                f'"mask_alpha" needs an alpha channel of the image\'s size {shape}. '
                f"Received: alpha of shape {alpha.shape}",
                param="mask_alpha",
                value=True,
            )
        mask = alpha.copy() if mask is None else mask * alpha
    if mask is None:
        return None
    return feather_inward(mask, float(params.get("mask_feather", 0.0)))


def _zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """Crop the centre ``1/factor`` of the image and scale it back up (one video frame step)."""
    height, width = image.shape[:2]
    crop_h, crop_w = max(1, round(height / factor)), max(1, round(width / factor))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return resize_image(image[top : top + crop_h, left : left + crop_w], (height, width))


def run(image: np.ndarray, params: Mapping[str, Any], context: FilterContext) -> np.ndarray:
    """The ``deepdream`` filter: ``run(image, params, context) -> image``.

    Args:
        image: float32 ``H x W x 3`` in [0, 1].
        params: Validated parameters (see :data:`neurofilters.filters.deepdream.plugin.PARAMS`).
        context: Progress, cancellation, seed, model cache and the image's alpha
            (used as a mask when ``mask_alpha`` is set).

    Returns:
        The dreamed image, same size, float32 in [0, 1] (the last frame when
        ``frames > 0``).

    Raises:
        ParameterError: Invalid combination (unknown layer, channel out of
            range, missing frame folder, unreadable mask or guide).
        ModelUnavailableError: The model's weights are not available.
    """
    frames = int(params.get("frames", 0))
    settings = settings_from_params(params)
    context.progress(0.0, f"loading model {settings.model}")
    model = context.load_model(settings.model)
    mask = _load_mask(params, image.shape[:2], getattr(context, "alpha", None))
    count = max(1, frames)
    result = np.asarray(image, np.float32)
    for frame in range(count):
        if frame > 0:
            result = _zoom(result, float(params["frame_zoom"]))

        def progress(fraction: float, message: str, frame: int = frame) -> None:
            prefix = f"frame {frame + 1}/{count}, " if frames > 0 else ""
            context.progress((frame + fraction) / count, prefix + message)

        result = dream(result, model, settings, rng=context.rng(frame), mask=mask, progress=progress)
        if frames > 0:
            context.emit(f"frame-{frame:05d}", result)
    return result


def with_settings(settings: DreamSettings, **changes: Any) -> DreamSettings:
    """A copy of ``settings`` with some fields changed (convenience for scripts and tests)."""
    return replace(settings, **changes)
