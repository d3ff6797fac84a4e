"""The ``texture`` filter: Gram-matrix texture synthesis from a sample, coarse to fine, optionally tileable."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from neurofilters.plugin_host import ParameterError

from ..octaves import resize_image
from .engine import GramEngine, Memo, Objective, optimise
from .plugin import DEFAULT_TEXTURE_LAYERS

__all__ = [
    "FINE_LAYERS", "MAX_OCTAVE_STEPS", "SHALLOW_FINE_MAX_STEPS", "fine_layer_count", "TEXTURE_MAX_OCTAVE_STEPS", "default_steps", "STALL", "STEPS_GROWTH", "TEXTURE_SCHEDULE", "build_engine", "clear_engine_cache", "engine_cache_enabled", "is_auto_layers", "match_colours", "match_histograms", "octave_sizes", "octave_steps",
    "rgb_of", "run_texture", "synthesise", "use_xla",
]

#: Context around each tile core: covers block4's receptive field radius (30 px), a multiple of 16.
TILE_MARGIN = 32
_MIN_OCTAVE_SIDE = 64


def rgb_of(pixels: np.ndarray) -> np.ndarray:
    """float32 ``H x W x 3`` from a ``H x W x C`` image parameter (grey repeated, alpha composited over its mean colour)."""
    array = np.asarray(pixels, np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    colour = array[:, :, :1].repeat(3, axis=2) if array.shape[2] in (1, 2) else array[:, :, :3]
    if array.shape[2] in (2, 4):
        alpha = array[:, :, -1:]
        weight = max(float(alpha.sum()), 1e-6)
        mean = (colour * alpha).reshape(-1, 3).sum(axis=0) / weight
        colour = colour * alpha + mean * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(colour, 0.0, 1.0), dtype=np.float32)


def is_auto_layers(layers: Any) -> bool:
    """Whether a layers parameter asks for the default set: ``"auto"``, ``None`` or the parsed form ``(("auto", 1.0),)``."""
    if layers in ("auto", None):
        return True
    return isinstance(layers, (tuple, list)) and len(layers) == 1 and isinstance(layers[0], (tuple, list)) and layers[0][0] == "auto"


def resolve_layers(model: Any, layers: Any, auto: str, param: str) -> list[tuple[str, float]]:
    """Raw layer names and weights: ``auto`` means ``auto`` on VGG-like networks (``blockN_...`` names)."""
    from neurofilters.plugin_host import parse_weighted_layers

    if is_auto_layers(layers):
        try:
            return [(model.resolve_layer(name), weight) for name, weight in parse_weighted_layers(auto)]
        except ParameterError:
            raise ParameterError(
                f'"{param}" must name layers of model {model.name!r} (its layers are not VGG\'s). Received: {param}=auto. '
                f"Give e.g. --{param.replace('_', '-')} LAYER:1,LAYER:1 (see 'neurofilters layers {model.name}').",
                param=param,
                value="auto",
            ) from None
    if isinstance(layers, str):
        layers = parse_weighted_layers(layers)
    return [(model.resolve_layer(name), float(weight)) for name, weight in layers]


def build_engine(
    context: Any, params: dict[str, Any], layer_names: Sequence[str], content_layer: str | None, *, jit_compile: bool | None = None
) -> GramEngine:
    """The tiled Gram engine on ``params['model']`` for ``layer_names`` (+ a content layer).

    ``jit_compile``: compile the loss-and-gradient step with XLA; ``None`` decides by :func:`use_xla`.
    The compiled network (and the statistics of samples it analysed, :class:`.engine.Memo`) is reused by
    later calls with the same model, layers and precision (see :data:`_NETWORKS`); each call gets its own engine.
    """
    import keras

    from ..gradients import compile_network, gradient_feature_model, resolve_precision

    model = context.load_model(params["model"])
    names = list(layer_names) + ([content_layer] if content_layer else [])
    precision = resolve_precision(params.get("precision", "auto"), model)
    key = (keras.backend.backend(), str(params["model"]), id(model), tuple(names), precision, jit_compile, use_xla(None, precision))
    entry = _NETWORKS.get(key) if engine_cache_enabled() else None
    if entry is None:
        # max_pixels=0: no convolution is banded (filters/zoo/banded.py); the compiled steps hold the weights as
        # constants, and oneDNN's direct convolution then has no scratch cap to cross.
        feature_model = gradient_feature_model(model, names, precision=precision, max_pixels=0)
        network = compile_network(feature_model, jit_compile=use_xla(feature_model, precision) if jit_compile is None else jit_compile)
        probe = network.forward(np.zeros((64, 64, 3), np.float32))
        entry = _Network(model, network, [max(1, round(64 / output.shape[0])) for output in probe], Memo())
        if engine_cache_enabled():
            _NETWORKS[key] = entry
            while len(_NETWORKS) > NETWORK_CACHE_SIZE:
                _NETWORKS.popitem(last=False)
    elif key in _NETWORKS:
        _NETWORKS.move_to_end(key)
    network, strides = entry.network, list(entry.strides)
    deepest = max(strides)
    margin = max(TILE_MARGIN, deepest * 2)
    margin = math.ceil(margin / deepest) * deepest
    if 16 % deepest and deepest % 16:
        raise ParameterError(
            f'"layers" must have strides that are powers of two up to 16 for tiling. Received: strides={strides}',
            param="layers",
            value=list(names),
        )
    engine = GramEngine(network, len(layer_names), content_layer is not None, int(params.get("tile_size", 512)), margin, strides)
    engine.memo = entry.memo
    return engine


@dataclass
class _Network:
    model: Any  # held so that its id, part of the key, is not reused while the entry lives
    network: Any
    strides: list[int]
    memo: Memo


#: Compiled feature networks by (backend, model, its id, layers, precision, XLA): a warm worker (GIMP's
#: preview, ``neurofilters serve``) reuses the traced steps and the sample's statistics instead of
#: rebuilding and re-tracing them on every call. Least recently used first; see :func:`clear_engine_cache`.
_NETWORKS: OrderedDict[tuple[Any, ...], _Network] = OrderedDict()
#: Most networks kept (each a view of its model's weights and its traced functions).
NETWORK_CACHE_SIZE = 4


def engine_cache_enabled() -> bool:
    """Whether :func:`build_engine` reuses networks (``NEUROFILTERS_TEXTURE_CACHE=0`` turns it off, for comparisons)."""
    import os

    return os.environ.get("NEUROFILTERS_TEXTURE_CACHE", "1") != "0"


def clear_engine_cache() -> None:
    """Forget the compiled networks and their stored statistics."""
    _NETWORKS.clear()


def use_xla(feature_model: Any, precision: str) -> bool:
    """Whether XLA compiles the steps: only when ``NEUROFILTERS_TEXTURE_XLA=1`` (TensorFlow, float32).

    Measured on the 2-core AVX2-capped EPYC (loaded, 2026-12-06): each new octave size costs an XLA
    compile of 9-12 s, and a 512² step was no faster than ``tf.function``'s (13.7 s vs 16.1 s, within
    the machine's noise), so the default keeps one shape-free trace for every size.
    """
    import os

    import keras

    del feature_model
    return os.environ.get("NEUROFILTERS_TEXTURE_XLA") == "1" and keras.backend.backend() == "tensorflow" and precision == "float32"


def octave_sizes(height: int, width: int, octaves: int) -> list[tuple[int, int]]:
    """Sizes from coarse to fine, each half the next; ``octaves=0`` picks a count (smaller side >= 128, at most 4)."""
    if octaves <= 0:
        octaves = 1
        while octaves < 4 and min(height, width) / 2**octaves >= _MIN_OCTAVE_SIDE:
            octaves += 1
    sizes = []
    for level in range(octaves - 1, -1, -1):
        scale = 2.0**-level
        sizes.append((max(16, round(height * scale)), max(16, round(width * scale))))
    return sizes


#: The filter's stall stop: an octave ends once its loss fell by less than 0.1 % over 5 iterations.
STALL = 1e-3
#: Layers of the default set matched at the finest octave (block1_conv1, block1_pool, block2_pool: a
#: third of the network's cost); the deeper ones were matched at the coarser octaves.
FINE_LAYERS = 3
#: Above this many iterations at the full size the default layers are all matched at the finest octave too.
#: The shallow finest octave is the cheap one a few iterations need, but it cannot lower the deep layers'
#: error, so more iterations barely help it. Measured on scikit-image's brick at 256², zero padding, loss
#: of all five layers in float32 (bench/bench_peers.py, bfloat16 natively): shallow (2026-12-06), 32
#: iterations 8.1 s -> 0.180, 64 15.5 s -> 0.118, 128 30.9 s -> 0.083, 256 56.7 s -> 0.070 (stall stop);
#: every layer (2026-12-07), 32 iterations 10.2 s -> 0.030, 64 18.9 s -> 0.0067, 128 38.1 s -> 0.0027,
#: 256 69.1 s -> 0.0015.
#: Every default (8 at 512² and above, up to 32 below) stays at or under it.
SHALLOW_FINE_MAX_STEPS = 32
#: Each octave below the finest runs this many times the next one's iterations (it has a quarter of the pixels).
STEPS_GROWTH = 2
#: Most iterations any octave runs under the schedule.
MAX_OCTAVE_STEPS = 200
#: The texture filter's cap: its coarsest octave at 512² ran 64 iterations for 11 % of the evaluations (a fifth
#: of the CPU time: small images use the cores poorly), while the next octave starts over from a loss about
#: 40x higher whatever it ended at. With 32 (512², AVX2 cap, 2026-12-06) the final Gram loss of scikit-image's
#: brick went 0.448 -> 0.447 and of GIMP's leopard 0.208 -> 0.221, and the results look alike side by side.
TEXTURE_MAX_OCTAVE_STEPS = 32
#: The texture filter's schedule: the keywords of :func:`synthesise` that :func:`run_texture` passes, read-only, so
#: the benchmarks and the docs' sheets that call :func:`synthesise` run what the filter runs.
TEXTURE_SCHEDULE: Mapping[str, Any] = MappingProxyType(
    {"schedule": "pyramid", "stall": STALL, "rematch": True, "max_octave_steps": TEXTURE_MAX_OCTAVE_STEPS}
)


#: Below this many pixels the default --steps grows (small outputs are cheap, and 8 iterations starve them).
SMALL_PIXELS = 512 * 512
#: At most this factor: sqrt(SMALL_PIXELS / pixels), so 128 x 128 gets 4 x 8 = 32 iterations at the full size.
SMALL_FACTOR = 4.0


def default_steps(steps: int, shape: tuple[int, int], context: Any) -> int:
    """``steps``, or for a default (not given) on an output under :data:`SMALL_PIXELS`, more of them.

    Measured on scikit-image's brick at 128 x 128 (load 2-3): 8 iterations at the full size lose the rows of
    bricks (8.6 s), 32 keep them (27 s), 64 match the old default's look (61 s; the old default took 150 s).
    """
    given = getattr(context, "given", None)
    if given is None or "steps" in given:
        return int(steps)
    pixels = max(1, int(shape[0]) * int(shape[1]))
    factor = min(SMALL_FACTOR, max(1.0, math.sqrt(SMALL_PIXELS / pixels)))
    return int(round(int(steps) * factor))


def fine_layer_count(steps: int, auto_layers: bool) -> int:
    """Layers the finest octave matches (the shallowest ones; 0: all): :data:`FINE_LAYERS` for the default layers
    at up to :data:`SHALLOW_FINE_MAX_STEPS` iterations, every layer when the user names them or asks for more."""
    return FINE_LAYERS if auto_layers and int(steps) <= SHALLOW_FINE_MAX_STEPS else 0


def octave_steps(steps: int, count: int, schedule: str = "pyramid", most: int = MAX_OCTAVE_STEPS) -> list[int]:
    """Iterations per octave, coarse to fine: ``steps`` at the finest.

    ``pyramid``: each coarser octave runs :data:`STEPS_GROWTH` times as many as the next (half the work
    of the next), at most ``most`` (or ``steps`` if more); ``flat``: ``steps`` everywhere.
    """
    if schedule == "flat":
        return [int(steps)] * count
    if schedule != "pyramid":
        raise ValueError(f'schedule must be "pyramid" or "flat". Received: schedule={schedule!r}')
    return [min(max(int(steps), int(most)), int(steps) * STEPS_GROWTH**level) for level in range(count - 1, -1, -1)]


def resize_wrapped(image: np.ndarray, shape: tuple[int, int], wrap: bool) -> np.ndarray:
    """Resize; with ``wrap`` the image is treated as periodic (no seam appears at the borders)."""
    if not wrap:
        return resize_image(image, shape)
    pad = 4
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="wrap")
    sy, sx = shape[0] / image.shape[0], shape[1] / image.shape[1]
    big = resize_image(padded, (round(padded.shape[0] * sy), round(padded.shape[1] * sx)))
    y0, x0 = round(pad * sy), round(pad * sx)
    return np.ascontiguousarray(big[y0 : y0 + shape[0], x0 : x0 + shape[1]])


def _sqrt_psd(matrix: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    values = np.clip(values, 0.0, None)
    if inverse:
        values = np.where(values > 1e-8, 1.0 / np.sqrt(np.maximum(values, 1e-8)), 0.0)
    else:
        values = np.sqrt(values)
    return (vectors * values) @ vectors.T


def match_colours(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give ``image`` the colour mean and covariance of ``reference`` (a grey reference makes it grey), then each
    channel ``reference``'s value distribution (rank mapping)."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3).astype(np.float64)
    mean, ref_mean = pixels.mean(axis=0), ref.mean(axis=0)
    transform = _sqrt_psd(np.cov(ref, rowvar=False)) @ _sqrt_psd(np.cov(pixels, rowvar=False) + 1e-8 * np.eye(3), inverse=True)
    coloured = ((pixels - mean) @ transform.T + ref_mean).reshape(image.shape).astype(np.float32)
    return match_histograms(coloured, reference)


def match_histograms(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give each channel of ``image`` the value distribution of ``reference``'s (rank mapping)."""
    out = np.empty_like(image)
    for channel in range(image.shape[2]):
        values = image[:, :, channel].ravel()
        order = np.argsort(values, kind="stable")
        quantiles = np.sort(reference[:, :, channel].ravel())
        positions = np.linspace(0, quantiles.size - 1, values.size)
        mapped = np.empty(values.size, np.float32)
        mapped[order] = np.interp(positions, np.arange(quantiles.size), quantiles)
        out[:, :, channel] = mapped.reshape(image.shape[:2])
    return out


def noise_like(sample: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with the sample's mean colour and colour covariance (grey samples give grey noise)."""
    colours = sample.reshape(-1, 3).astype(np.float64)
    mean = colours.mean(axis=0)
    factor = np.linalg.cholesky(np.cov(colours, rowvar=False) + 1e-6 * np.eye(3))
    noise = rng.standard_normal(size=(shape[0], shape[1], 3)) @ factor.T
    return np.clip(mean + noise, 0.0, 1.0).astype(np.float32)


def synthesise(
    engine: GramEngine,
    sample: np.ndarray,
    shape: tuple[int, int],
    *,
    steps: int,
    octaves: int,
    wrap: bool,
    rng: np.random.Generator,
    optimizer: str = "auto",
    weights: Sequence[float] | None = None,
    progress: Any = None,
    schedule: str = "flat",
    boundary: str | None = None,
    stall: float = 0.0,
    rematch: bool = False,
    fine_layers: int = 0,
    max_octave_steps: int = MAX_OCTAVE_STEPS,
) -> tuple[np.ndarray, list[float]]:
    """Synthesise a ``shape`` texture like ``sample``.

    Args:
        engine: The Gram engine (style layers only).
        sample: float32 ``h x w x 3`` in [0, 1].
        shape: ``(height, width)`` of the result.
        steps: Optimiser iterations per octave (``flat``) or at the finest octave (``pyramid``, see :func:`octave_steps`).
        octaves: Coarse-to-fine scales (0 = automatic).
        wrap: Tileable result.
        rng: Source of the starting noise.
        optimizer: ``auto``, ``lbfgs`` or ``adam``.
        weights: Per-layer weights (default 1 each).
        progress: ``progress(fraction, message)``.
        schedule: ``flat`` or ``pyramid`` (:func:`octave_steps`).
        boundary: What the network sees beyond the borders: ``zero``, ``wrap`` or ``reflect``
            (``None``: ``wrap`` when ``wrap``, else ``zero``). The sample is analysed with ``reflect``
            unless this is ``zero``.
        stall: Stop an octave early once its loss fell by less than this fraction over the last
            :data:`~.engine.STALL_WINDOW` iterations (0: never).
        rematch: After each enlargement, give every channel the (scaled) sample's histogram again,
            which restores the contrast that interpolation blurred.
        fine_layers: When there are several octaves, match only this many (shallowest) layers in the
            finest one: the deep layers' statistics were matched at the coarser octaves, and the
            network is then evaluated only up to the last layer matched (0: all layers).
        max_octave_steps: The ``pyramid`` schedule's cap (see :func:`octave_steps`).

    Returns:
        The texture and the loss history of every iteration (all octaves).
    """
    sizes = octave_sizes(shape[0], shape[1], octaves)
    plan = octave_steps(steps, len(sizes), schedule, max_octave_steps)
    boundary = boundary or ("wrap" if wrap else "zero")
    weights = list(weights) if weights is not None else [1.0] * engine.n_style
    image = noise_like(sample, sizes[0], rng)
    history: list[float] = []
    total_work = sum(h * w * n for (h, w), n in zip(sizes, plan))
    done = 0.0
    for index, (size, level_steps) in enumerate(zip(sizes, plan)):
        scale = size[0] / shape[0]
        if index:
            image = resize_wrapped(image, size, wrap)
        level_sample = sample if abs(scale - 1.0) < 1e-6 else resize_image(sample, (max(16, round(sample.shape[0] * scale)), max(16, round(sample.shape[1] * scale))))
        if index and rematch:
            image = match_histograms(image, level_sample)
        level_weights = weights
        if fine_layers and index == len(sizes) - 1 and index > 0:
            level_weights = [weight if layer < fine_layers else 0.0 for layer, weight in enumerate(weights)]
        objective = Objective(engine.gram_targets(level_sample, "zero" if boundary == "zero" else "reflect"), level_weights)
        level_work = size[0] * size[1]

        def report(step: int, loss: float, _done: float = done, _work: float = level_work, _index: int = index, _steps: int = level_steps) -> None:
            if progress is not None:
                fraction = min(0.999, (_done + _work * step) / total_work)
                progress(fraction, f"octave {_index + 1}/{len(sizes)}, step {step}/{_steps}, loss {loss:.4g}")

        def evaluate(x: np.ndarray, _objective: Objective = objective) -> tuple[float, np.ndarray]:
            loss, gradient, _ = engine.loss_and_gradient(x, _objective, wrap=boundary)
            return loss, gradient

        image, level_history = optimise(evaluate, image, level_steps, progress=report, method=optimizer, stall=stall)
        history += level_history
        done += level_work * level_steps
    return image, history


def run_texture(image: np.ndarray, params: dict[str, Any], context: Any) -> np.ndarray:
    """The ``texture`` filter: a new texture like ``params['source']`` (or like the input) of the input's size."""
    source = params.get("source")
    sample = rgb_of(source) if source is not None else np.asarray(image[:, :, :3], np.float32)
    if source is None:
        context.report("no --source given: the input itself is the texture sample")
    if params.get("source_scale", 1.0) != 1.0:
        factor = float(params["source_scale"])
        sample = resize_image(sample, (max(16, round(sample.shape[0] * factor)), max(16, round(sample.shape[1] * factor))))
    if min(sample.shape[:2]) < 16:
        raise ParameterError(
            f'"source" must be at least 16 x 16 pixels. Received: {sample.shape[1]} x {sample.shape[0]}. Give a larger sample or a --source-scale above 1.',
            param="source",
            value=f"{sample.shape[1]}x{sample.shape[0]}",
        )
    model = context.load_model(params["model"])
    layers = resolve_layers(model, params.get("layers", "auto"), DEFAULT_TEXTURE_LAYERS, "layers")
    context.progress(0.0, "preparing the network")
    engine = build_engine(context, params, [name for name, _ in layers], None)
    wrap = bool(params["tileable"])
    steps = default_steps(int(params["steps"]), image.shape[:2], context)
    result, history = synthesise(
        engine,
        sample,
        image.shape[:2],
        steps=steps,
        octaves=int(params["octaves"]),
        wrap=wrap,
        rng=context.rng(1),
        optimizer=params.get("optimizer", "auto"),
        weights=[weight for _, weight in layers],
        progress=context.progress,
        boundary="wrap" if wrap else "reflect",
        fine_layers=fine_layer_count(steps, is_auto_layers(params.get("layers", "auto"))),
        **TEXTURE_SCHEDULE,
    )
    if params.get("match_colours", True):
        result = match_colours(result, sample)
    if history:
        context.report(f"texture loss {history[-1]:.4g} after {len(history)} steps")
    context.progress(1.0, "done")
    return np.clip(result, 0.0, 1.0).astype(np.float32)


