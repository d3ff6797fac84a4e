"""Class visualisation on a canvas of any size: one spectral image, each step shows the network crops of its input size.

A canvas larger than the network's input is held whole as a spectrum (decorrelated
colour, ``1/f`` scale: :mod:`neurofilters.filters.parameterization`). Every step
draws ``copies`` random square views (centre anywhere on the canvas, side around
the object size ``view`` canvas pixels, zoomed and turned as the recipe says) and
resamples each to ``size x size`` network pixels with exact bilinear weights
computed here in numpy from the caller's seeded generator. Adam raises the mean
objective over the views; over the steps every part of the canvas receives
gradients, so the class appears many times at the chosen scale, drawn at the
canvas' own resolution (not one small render enlarged).

The views are gathers from the flattened canvas (``keras.ops.take``), so every
backend runs them and their gradient is exact. An optional fixed image and mask
composite the canvas into a photo (``image + mask * (canvas - image)``): the
network sees the composite and only the masked pixels receive gradients.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from ..parameterization import COLOR_CORRELATION, TransformSettings, frequency_scale
from ..visualization.objectives import Objective
from ..visualization.visualize import reuse_trainer

_log = logging.getLogger("neurofilters.hallucinate.canvas")

__all__ = [
    "CanvasViews",
    "SpectralCanvas",
    "canvas_views",
    "half_scale",
    "half_spectrum",
    "half_spectrum_to_image",
    "image_to_half_spectrum",
    "pyramid_levels",
    "pyramid_shapes",
    "render_canvas",
]


def half_scale(height: int, width: int, decay: float = 1.0) -> np.ndarray:
    """The frequency scale of a half spectrum (``width // 2 + 1`` columns, for a real inverse FFT).

    :func:`~neurofilters.filters.parameterization.frequency_scale`'s columns ``0 .. width // 2``.
    A half coefficient ``h`` stands for the full spectrum's pair ``(s_k, s_-k)`` with
    ``h = (s_k + conj(s_-k)) / 2``; each of the pair moves by Adam's step, so ``h`` does too:
    the image moves as fast as with the full spectrum, with half the coefficients and FFT work.
    """
    return np.ascontiguousarray(frequency_scale(height, width, decay)[:, : width // 2 + 1])


def half_spectrum(spectrum: np.ndarray, decay: float = 1.0) -> np.ndarray:
    """The half spectrum (``(2, 3, H, W // 2 + 1)``) of the image a full one (``(2, 3, H, W)``) stands for.

    Exact for any full spectrum (seeded noise or a photo's): the real part of its inverse FFT
    (the image before colour and sigmoid) transformed back with a real FFT.
    """
    height, width = spectrum.shape[2], spectrum.shape[3]
    full = (spectrum[0].astype(np.float64) + 1j * spectrum[1].astype(np.float64)) * frequency_scale(height, width, decay)
    logits = np.fft.ifft2(full).real
    half = np.fft.rfft2(logits) / half_scale(height, width, decay)
    return np.stack([half.real, half.imag]).astype(np.float32)


def half_spectrum_to_image(spectrum: Any, scale: Any, width: int) -> Any:
    """``(1, H, W, 3)`` in (0, 1): the real inverse FFT of ``scale * spectrum``, decorrelated colour, sigmoid.

    The image is a real function of the spectrum, as
    :func:`~neurofilters.filters.parameterization.spectrum_to_image`'s real part of a full
    inverse FFT, but with half the coefficients: an inverse FFT over the rows, then a real
    inverse FFT over the columns (``1 / (h w)`` in all). TensorFlow runs the two as one
    ``irfft2d`` (:func:`_tensorflow_logits`); other backends through ``keras.ops``.
    """
    if keras.backend.backend() == "tensorflow":
        pixels = _tensorflow_logits(spectrum, scale, width)
    else:
        pixels = _logits(spectrum, scale, width)
    pixels = ops.matmul(ops.transpose(pixels, (1, 2, 0)), ops.convert_to_tensor(COLOR_CORRELATION.T))
    return ops.expand_dims(ops.sigmoid(pixels), 0)


def _logits(spectrum: Any, scale: Any, width: int) -> Any:
    """``3 x H x W``: the real inverse FFT of ``scale * spectrum`` with ``keras.ops`` (any backend)."""
    real = ops.transpose(spectrum[0] * scale, (0, 2, 1))  # 3 x W2 x H
    imaginary = ops.transpose(spectrum[1] * scale, (0, 2, 1))
    height = ops.shape(real)[-1]
    # Inverse FFT over the rows: conj(fft(conj(z))) / h.
    real, imaginary = ops.fft((real, -imaginary))
    real = ops.transpose(real, (0, 2, 1)) / height
    imaginary = ops.transpose(-imaginary, (0, 2, 1)) / height
    return ops.irfft((real, imaginary), fft_length=width)


def _tensorflow_logits(spectrum: Any, scale: Any, width: int) -> Any:
    """:func:`_logits` as TensorFlow's one ``irfft2d``.

    The same transform without the four transposes, the conjugations and the slices of
    the spectrum (``StridedSliceGrad`` builds a zero-filled spectrum per slice). Image and
    gradient (colour and sigmoid included) took 10.3 ms instead of 20.8 at 512 px and 46 ms
    instead of 78 at 1024 px (AVX2 cap, 2-core Xeon). On the CPU they came out bit for bit
    those of :func:`_logits` at 512 and 1024 px, and within float32 rounding (one unit in the
    last place of the image) at sides that are not powers of two (tested).
    """
    import tensorflow as tf

    real, imaginary = tf.unstack(spectrum * scale, axis=0)
    height = real.shape[1] if real.shape[1] is not None else tf.shape(real)[1]
    return tf.signal.irfft2d(tf.complex(real, imaginary), fft_length=tf.stack([height, width]))


def image_to_half_spectrum(image: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The half spectrum whose image (:func:`half_spectrum_to_image`, ``scale`` from :func:`half_scale`) is ``image``."""
    pixels = np.clip(np.asarray(image, np.float64), 1e-3, 1.0 - 1e-3)
    logits = (np.log(pixels) - np.log1p(-pixels)) @ np.linalg.inv(COLOR_CORRELATION.T.astype(np.float64))
    spectrum = np.fft.rfft2(np.transpose(logits, (2, 0, 1))) / scale
    return np.stack([spectrum.real, spectrum.imag]).astype(np.float32)


@dataclass(frozen=True)
class CanvasViews:
    """How the views of a canvas are drawn.

    Attributes:
        size: Side of each view as the network sees it (pixels).
        low: Smallest side of a view on the canvas, before the recipe's zoom (canvas pixels).
        high: Largest side (log-uniform between ``low`` and ``high``).
        transforms: The recipe's zoom and turn ranges and its border (``pad``, scaled with the view).
        context: Share of the views (rounded up) whose side is log-uniform between ``low``
            and the canvas' shorter side instead: they make the whole image read as the class too.
        levels: Levels of the canvas' pyramid (2x average pooling each); a view wider than
            ``size`` samples the level where it is at most twice ``size`` (no aliasing).
    """

    size: int
    low: float
    high: float
    transforms: TransformSettings
    context: float = 0.0
    levels: int = 1


def pyramid_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """The shapes of the canvas' pyramid levels (level ``l``: each side halved ``l`` times, rounded down)."""
    return [(height >> level, width >> level) for level in range(levels)]


def pyramid_levels(height: int, width: int, size: int) -> int:
    """Levels needed for a view of the whole canvas to sample a level at most twice ``size``."""
    levels = 1
    while max(height, width) / 2 ** levels >= 2 * size and min(height, width) >> levels >= 8:
        levels += 1
    return levels


def canvas_views(
    rng: np.random.Generator, count: int, height: int, width: int, views: CanvasViews
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` views: corner indices into the flat canvas and their bilinear weights.

    A view is a square of side ``s`` (log-uniform in ``[low, high]``, or up to the
    canvas' shorter side for the first ``context`` share, divided by the recipe's
    zoom), turned by the recipe's angle, centred anywhere on the canvas widened by
    the recipe's border scaled to the view, sampled from the pyramid level where
    it is at most twice ``size``. Indices run over the levels' flattened pixels one
    after the other; pixels outside the canvas point past them all: the fill pixel.

    Returns:
        ``(indices, weights)``: int32 and float32 ``(count, size, size, 4)``.
    """
    settings = views.transforms
    size = views.size
    shapes = pyramid_shapes(height, width, views.levels)
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    grid = ((np.arange(size, dtype=np.float32) + 0.5) / size - 0.5).astype(np.float32)
    context = math.ceil(views.context * count) if views.context > 0 else 0
    rows = []
    for index in range(count):
        low, high = views.low, (max(views.low, float(min(height, width))) if index < context else views.high)
        side = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low
        zoom_low, zoom_high = settings.scale
        side /= float(np.exp(rng.uniform(np.log(zoom_low), np.log(zoom_high))))
        angle = math.radians(float(rng.uniform(-settings.degrees, settings.degrees)))
        border = settings.pad * side / size
        # Centre: anywhere that keeps the view's middle on the canvas widened by the border.
        half_y, half_x = min(side / 2, height / 2), min(side / 2, width / 2)
        cy = float(rng.uniform(half_y - border, height - half_y + border))
        cx = float(rng.uniform(half_x - border, width - half_x + border))
        level = int(min(views.levels - 1, max(0, math.floor(math.log2(max(side / size, 1.0))))))
        factor = 2.0**level
        # Level-0 pixel-centre coordinates -> level coordinates: (u + 0.5) / 2^l - 0.5.
        rows.append((cy / factor - 0.5, cx / factor - 0.5, math.cos(angle) * side / factor, math.sin(angle) * side / factor, level))
    table = np.asarray(rows, np.float32)
    cy, cx, cos, sin = (table[:, column, None, None] for column in range(4))
    level = table[:, 4].astype(np.int32)
    level_h = np.asarray([shapes[k][0] for k in level], np.int32)[:, None, None]
    level_w = np.asarray([shapes[k][1] for k in level], np.int32)[:, None, None]
    start = starts[level].astype(np.int32)[:, None, None]
    fill = np.int32(starts[-1])
    gx, gy = grid[None, None, :], grid[None, :, None]
    y = cy + sin * gx + cos * gy
    x = cx + cos * gx - sin * gy
    y0, x0 = np.floor(y), np.floor(x)
    wy, wx = y - y0, x - x0
    iy, ix = y0.astype(np.int32), x0.astype(np.int32)
    # In int32 and written in place (the same numbers as int64 and stacking, in half the time at 16 views).
    rows_inside = [(iy + dy >= 0) & (iy + dy < level_h) for dy in (0, 1)]
    columns_inside = [(ix + dx >= 0) & (ix + dx < level_w) for dx in (0, 1)]
    corner = start + iy * level_w + ix
    indices = np.empty((*y.shape, 4), np.int32)
    weights = np.empty((*y.shape, 4), np.float32)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        indices[..., k] = np.where(rows_inside[dy] & columns_inside[dx], corner + (dy * level_w + dx), fill)
    below, right = 1 - wy, 1 - wx
    weights[..., 0], weights[..., 1], weights[..., 2], weights[..., 3] = below * right, below * wx, wy * right, wy * wx
    return indices, weights


class SpectralCanvas(keras.layers.Layer):
    """A trainable spectral canvas; called on ``[indices, weights]`` (see :func:`canvas_views`), returns the views.

    With ``base`` and ``mask`` the canvas is composited into ``base`` first
    (``base + mask * (canvas - base)``). With ``pixel=True`` the weight is the
    ``H x W x 3`` image itself (clipped to [0, 1]): the plain-pixel baseline.
    """

    def __init__(
        self,
        height: int,
        width: int,
        initial: np.ndarray,
        *,
        decay: float = 1.0,
        fill: float = 0.5,
        base: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        levels: int = 1,
        pixel: bool = False,
        **kwargs: Any,
    ) -> None:
        """Hold ``initial`` (a half spectrum ``(2, 3, height, width // 2 + 1)``, :func:`half_spectrum`, or ``(height, width, 3)`` pixels) as the trainable image."""
        super().__init__(**kwargs)
        self.height, self.width, self.fill, self.levels = int(height), int(width), float(fill), int(levels)
        self.pixel = bool(pixel)
        #: Times :meth:`call` ran in Python: once per trace of the train step (the functional build uses compute_output_shape).
        self.traces = 0
        self._scale = half_scale(self.height, self.width, decay)
        self._base = None if base is None else np.asarray(base, np.float32).reshape(-1, 3)
        self._mask = None if mask is None else np.asarray(mask, np.float32).reshape(-1, 1)
        self.spectrum = self.add_weight(
            shape=(self.height, self.width, 3) if self.pixel else (2, 3, self.height, self.width // 2 + 1),
            initializer=keras.initializers.Constant(np.asarray(initial, np.float32)),
            trainable=True,
            name="pixels" if self.pixel else "spectrum",
        )

    def image(self) -> Any:
        """The canvas alone, ``(1, H, W, 3)`` in [0, 1]."""
        if self.pixel:
            return ops.clip(self.spectrum, 0.0, 1.0)[None]
        return half_spectrum_to_image(self.spectrum, ops.convert_to_tensor(self._scale), self.width)

    def call(self, inputs: Any) -> Any:
        """Bilinear views: ``sum_k weights[..., k] * flat[indices[..., k]]``."""
        self.traces += 1
        indices, weights = inputs
        image = self.image()
        if self._base is not None:
            base = ops.reshape(ops.convert_to_tensor(self._base), (1, self.height, self.width, 3))
            mask = ops.reshape(ops.convert_to_tensor(self._mask), (1, self.height, self.width, 1)) if self._mask is not None else 1.0
            image = base + mask * (image - base)
        parts = [ops.reshape(image, (-1, 3))]
        level = image
        for _ in range(1, self.levels):
            level = ops.average_pool(level, pool_size=2, strides=2, padding="valid")
            parts.append(ops.reshape(level, (-1, 3)))
        parts.append(ops.full((1, 3), self.fill, dtype=image.dtype))
        flat = ops.concatenate(parts, axis=0)
        if keras.backend.backend() == "tensorflow":
            return _sparse_views(flat, indices, weights)
        views = 0.0
        for corner in range(4):
            views = views + ops.take(flat, ops.cast(indices[..., corner], "int32"), axis=0) * weights[..., corner : corner + 1]
        return views

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        """``(B, size, size, 3)``."""
        return (*tuple(input_shape[0])[:-1], 3)


def _sparse_views(flat: Any, indices: Any, weights: Any) -> Any:
    """TensorFlow: the views as one sparse matrix (4 bilinear weights a row) times the flat canvas.

    The same sums as the four gathers, in the same order (the forward is bit for bit the
    same), but the gradient is the transposed product (``adjoint_a``), a sequential loop
    over the weights: the gathers' gradient (four scatter-adds into the canvas) took
    about twice the CPU time of the whole product at 1024 px with 16 views.
    """
    import tensorflow as tf

    shape = tf.shape(indices)
    rows = shape[0] * shape[1] * shape[2]
    sparse = tf.SparseTensor(
        tf.stack([tf.repeat(tf.range(tf.cast(rows, tf.int64)), 4), tf.cast(tf.reshape(indices, [-1]), tf.int64)], axis=1),
        tf.reshape(weights, [-1]),
        tf.stack([tf.cast(rows, tf.int64), tf.cast(tf.shape(flat)[0], tf.int64)]),
    )

    @tf.custom_gradient
    def product(values: Any) -> Any:
        def gradient(upstream: Any) -> Any:
            return tf.sparse.sparse_dense_matmul(sparse, upstream, adjoint_a=True)

        return tf.sparse.sparse_dense_matmul(sparse, values), gradient

    return tf.reshape(product(flat), tf.concat([shape[:3], [3]], axis=0))


def _trainer(model: Any, objective: Objective, canvas: SpectralCanvas, size: int, learning_rate: float) -> Any:
    """A Keras model from views to per-view objectives, compiled with Adam on the canvas' spectrum only."""
    from ..gradients import gradient_feature_model

    features = gradient_feature_model(model, [objective.layer], relu6="keep", precision="float32")
    features.trainable = False
    indices = keras.Input(shape=(size, size, 4), name="corners", dtype="int32")
    weights = keras.Input(shape=(size, size, 4), name="weights")
    outputs = features(canvas([indices, weights]))
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    trainer = keras.Model([indices, weights], objective.score(outputs), name="canvas_visualisation")

    def ascend(_: Any, scores: Any) -> Any:
        return -ops.mean(scores)

    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=ascend, jit_compile=False)
    # Adam's moments made now: otherwise the first step creates them and TensorFlow traces the step twice
    # (about 0.6 CPU-s); same arithmetic.
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


#: Compiled canvas trainers by (model, objective, canvas, views, step) without a photo: building and tracing one
#: costs about 2 CPU seconds, more than a whole GIMP preview; the next run of the same size reuses it.
_TRAINERS: dict[tuple[Any, ...], tuple[Any, SpectralCanvas]] = {}


def _cached_trainer(
    model: Any, objective: Objective, initial: np.ndarray, height: int, width: int, views: CanvasViews,
    learning_rate: float, decay: float, base: np.ndarray | None, mask: np.ndarray | None, pixel: bool,
) -> tuple[Any, SpectralCanvas]:
    """A compiled trainer with its canvas set to ``initial`` and a fresh Adam state (a new one when a photo is composited)."""
    if base is not None:
        canvas = SpectralCanvas(height, width, initial, decay=decay, base=base, mask=mask, levels=views.levels, pixel=pixel)
        return _trainer(model, objective, canvas, views.size, learning_rate), canvas
    key = (id(model), model.name, objective, height, width, views.size, views.levels, float(learning_rate), float(decay), pixel)

    def build() -> tuple[Any, SpectralCanvas]:
        canvas = SpectralCanvas(height, width, initial, decay=decay, levels=views.levels, pixel=pixel)
        return _trainer(model, objective, canvas, views.size, learning_rate), canvas

    return reuse_trainer(_TRAINERS, key, build, initial)


def render_canvas(
    model: Any,
    objective: Objective,
    initial: np.ndarray,
    *,
    views: CanvasViews,
    steps: int,
    copies: int,
    learning_rate: float,
    rng: np.random.Generator,
    decay: float = 1.0,
    base: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """Optimise a canvas (its spectrum ``initial``, ``(2, 3, H, W)``, or its pixels, ``(H, W, 3)``) toward ``objective`` through random views.

    Args:
        model: A zoo model handle.
        objective: What to raise.
        initial: Starting spectrum (:func:`~neurofilters.filters.parameterization.initial_spectrum`
            or :func:`~neurofilters.filters.parameterization.image_to_spectrum`).
        views: How views are drawn.
        steps: Adam steps.
        copies: Views per step.
        learning_rate: Adam's step on the spectrum.
        rng: Seeded generator of the views.
        decay: ``1/f`` exponent of the spectrum scale.
        base: Optional ``H x W x 3`` image the canvas is composited into (with ``mask``).
        mask: Optional ``H x W`` weights of the canvas in the composite (needs ``base``).
        progress: ``progress(step, objective)`` after every step.

    Returns:
        float32 ``H x W x 3`` in [0, 1]: the canvas (composited into ``base`` when given).
    """
    pixel = initial.ndim == 3
    height, width = (int(initial.shape[0]), int(initial.shape[1])) if pixel else (int(initial.shape[2]), int(initial.shape[3]))
    if not pixel:
        initial = half_spectrum(initial, decay)
    trainer, canvas = _cached_trainer(model, objective, initial, height, width, views, learning_rate, decay, base, mask, pixel)
    targets = np.zeros((copies,), np.float32)
    traced, warm = canvas.traces, None
    for step in range(steps):
        indices, weights = canvas_views(rng, copies, height, width, views)
        loss = trainer.train_on_batch([indices, weights], targets)
        if warm is None:
            warm = canvas.traces  # a new trainer traces its step on the first step; every later step has the same shapes
        if progress is not None:
            progress(step + 1, -float(np.asarray(loss).reshape(-1)[0]))
    retraced = canvas.traces - (warm if warm is not None else traced)
    (_log.warning if retraced else _log.debug)(
        "canvas %dx%d: %d steps of %d views, %d traces in warm-up, %d after",
        height, width, steps, copies, (warm if warm is not None else traced) - traced, retraced,
    )
    image = np.asarray(ops.convert_to_numpy(canvas.image())[0], np.float32)
    if base is not None:
        keep = np.ones((height, width, 1), np.float32) if mask is None else np.asarray(mask, np.float32)[:, :, None]
        image = np.asarray(base, np.float32) + keep * (image - np.asarray(base, np.float32))
    return np.clip(image, 0.0, 1.0)
