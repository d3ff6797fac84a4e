"""Image parameterisations and transformation robustness for feature visualisation (shared by filters).

Optimising raw pixels toward a class or a channel gives high-frequency "grey
mush"; Olah et al. (Distill 2017, "Feature Visualization") showed two remedies
that this module implements as plain ``keras.ops`` code, so every backend
runs them:

* a **spectral parameterisation with decorrelated colour**: the image is the
  inverse FFT of a learned spectrum whose entries are scaled by ``1 / f``
  (every frequency gets a comparable learning rate), mapped through the
  square root of ImageNet's colour covariance and a sigmoid into [0, 1];
* **transformation robustness**: each step sees randomly padded, shifted,
  scaled and rotated copies, so only features that survive small changes of
  view grow. The transforms are one affine map per copy, drawn here with
  numpy from the caller's seeded generator (deterministic) and applied in the
  graph by ``keras.ops.image.affine_transform`` (bilinear, differentiable).

Lucid's constants (the colour matrix, the ``1/f`` scale with ``sqrt(w h) / 4``,
initial standard deviation 0.01, ``standard_transforms``) are the
:data:`LUCID_TRANSFORMS` preset; :data:`ROBUST_TRANSFORMS` is the stronger set
the ``hallucinate`` filter uses by default, which transfers better to other
networks. Written here (not taken from Lucid or lucent) because neither runs
on Keras 3; the network explorer reuses it for feature inversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = [
    "COLOR_CORRELATION",
    "COLOR_CORRELATION_SVD_SQRT",
    "LUCID_TRANSFORMS",
    "ROBUST_TRANSFORMS",
    "SpectralImage",
    "TransformSettings",
    "apply_transforms",
    "frequency_scale",
    "image_to_spectrum",
    "initial_spectrum",
    "random_transforms",
    "spectrum_to_image",
]

#: Square root of ImageNet's RGB covariance (its SVD factor), Lucid's constant.
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)
#: The colour decorrelation matrix: :data:`COLOR_CORRELATION_SVD_SQRT` normalised so that its largest column has
#: unit norm (as Lucid does); pixels are ``decorrelated @ COLOR_CORRELATION.T``.
COLOR_CORRELATION = (COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))).astype(np.float32)
#: Lucid's initial standard deviation of the spectrum.
INITIAL_SD = 0.01


@dataclass(frozen=True)
class TransformSettings:
    """Random views for transformation robustness.

    Attributes:
        pad: Border added around the image before the affine map (pixels).
        jitter: Largest shift in pixels, each axis (uniform integer).
        scale: ``(low, high)``: zoom factor range (uniform).
        degrees: Largest rotation (uniform in ``[-degrees, degrees]``).
        fill: Grey level of the padding.
    """

    pad: int = 12
    jitter: int = 12
    scale: tuple[float, float] = (0.9, 1.1)
    degrees: float = 10.0
    fill: float = 0.5


#: Lucid's ``standard_transforms``: pad 12, jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4
#: (the two jitters are folded into one shift of up to 12 pixels).
LUCID_TRANSFORMS = TransformSettings(pad=12, jitter=12, scale=(0.9, 1.1), degrees=10.0)
#: Stronger views (the ``hallucinate`` default): larger shifts, zooms and turns.
ROBUST_TRANSFORMS = TransformSettings(pad=16, jitter=24, scale=(0.75, 1.25), degrees=20.0)


def frequency_scale(height: int, width: int, decay: float = 1.0) -> np.ndarray:
    """Per-frequency scale of the spectrum: ``1 / max(f, 1 / max(h, w)) ** decay * sqrt(h w) / 4``.

    Args:
        height: Image height.
        width: Image width.
        decay: Exponent of the ``1/f`` fall-off (1 = Lucid's).

    Returns:
        float32 ``height x width`` (full, unshifted FFT layout).
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    frequencies = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay
    return (scale * math.sqrt(height * width) / 4.0).astype(np.float32)


def initial_spectrum(rng: np.random.Generator, height: int, width: int, sd: float = INITIAL_SD) -> np.ndarray:
    """A random starting spectrum, float32 ``(2, 3, height, width)`` (real, imaginary parts)."""
    return (rng.standard_normal((2, 3, height, width)) * sd).astype(np.float32)


def spectrum_to_image(spectrum: Any, scale: Any, decorrelate: bool = True) -> Any:
    """Map a spectrum to an RGB image in [0, 1] (differentiable, ``keras.ops``).

    The image is the real part of the inverse FFT (normalised by ``1 / (h w)``,
    as Lucid's ``irfft2d``) of ``scale * spectrum`` per channel, then the
    decorrelated colour matrix, then a sigmoid.

    Args:
        spectrum: ``(2, 3, H, W)``: real and imaginary parts.
        scale: ``(H, W)`` from :func:`frequency_scale`.
        decorrelate: Apply the colour matrix (otherwise channels are independent).

    Returns:
        ``(1, H, W, 3)`` tensor in (0, 1).
    """
    real = spectrum[0] * scale
    imaginary = spectrum[1] * scale
    pixels, _ = ops.ifft2((real, imaginary))
    pixels = ops.transpose(pixels, (1, 2, 0))  # H x W x 3
    if decorrelate:
        pixels = ops.matmul(pixels, ops.convert_to_tensor(COLOR_CORRELATION.T))
    return ops.sigmoid(pixels)[None]


def image_to_spectrum(image: np.ndarray, scale: np.ndarray, decorrelate: bool = True) -> np.ndarray:
    """The spectrum whose image (:func:`spectrum_to_image`) is ``image`` (start from a photo).

    Args:
        image: float ``H x W x 3`` in [0, 1] (values are kept inside (0, 1) for the logit).
        scale: ``(H, W)`` from :func:`frequency_scale`.
        decorrelate: As in :func:`spectrum_to_image`.

    Returns:
        float32 ``(2, 3, H, W)``.
    """
    pixels = np.clip(np.asarray(image, np.float64), 1e-3, 1.0 - 1e-3)
    logits = np.log(pixels) - np.log1p(-pixels)
    if decorrelate:
        logits = logits @ np.linalg.inv(COLOR_CORRELATION.T.astype(np.float64))
    spectrum = np.fft.fft2(np.transpose(logits, (2, 0, 1))) / scale
    return np.stack([spectrum.real, spectrum.imag]).astype(np.float32)


class SpectralImage(keras.layers.Layer):
    """A trainable image held as a spectrum; called on transform matrices, returns transformed views.

    ``layer(matrices)`` with ``matrices`` of shape ``(B, 8)`` (see
    :func:`random_transforms`) returns ``(B, H + 2 pad, W + 2 pad, 3)``: the
    image padded with the fill grey and warped by each matrix. :meth:`image`
    gives the untransformed image.
    """

    def __init__(
        self,
        height: int,
        width: int,
        initial: np.ndarray,
        *,
        pad: int = 0,
        fill: float = 0.5,
        decay: float = 1.0,
        decorrelate: bool = True,
        **kwargs: Any,
    ) -> None:
        """Hold ``initial`` (``(2, 3, height, width)``) as the trainable spectrum."""
        super().__init__(**kwargs)
        self.height, self.width, self.pad, self.fill = int(height), int(width), int(pad), float(fill)
        self.decorrelate = decorrelate
        self._scale = frequency_scale(self.height, self.width, decay)
        self.spectrum = self.add_weight(
            shape=(2, 3, self.height, self.width),
            initializer=keras.initializers.Constant(np.asarray(initial, np.float32)),
            trainable=True,
            name="spectrum",
        )

    def image(self) -> Any:
        """The current image, ``(1, H, W, 3)`` in (0, 1)."""
        return spectrum_to_image(self.spectrum, ops.convert_to_tensor(self._scale), self.decorrelate)

    def call(self, matrices: Any) -> Any:
        """Transformed views of the image, one per row of ``matrices``."""
        return apply_transforms(self.image(), matrices, pad=self.pad, fill=self.fill)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """``(B, H + 2 pad, W + 2 pad, 3)``."""
        return (input_shape[0], self.height + 2 * self.pad, self.width + 2 * self.pad, 3)


def apply_transforms(image: Any, matrices: Any, *, pad: int, fill: float = 0.5) -> Any:
    """Pad ``image`` (``(1, H, W, 3)``) and warp one copy by each matrix (``keras.ops``).

    Args:
        image: ``(1, H, W, 3)`` tensor.
        matrices: ``(B, 8)`` projective matrices mapping output to input
            coordinates (``keras.ops.image.affine_transform``'s convention).
        pad: Border width (filled with ``fill``).
        fill: Grey level of the border and of what the warp brings in.

    Returns:
        ``(B, H + 2 pad, W + 2 pad, 3)``.
    """
    if pad:
        image = ops.pad(image - fill, ((0, 0), (pad, pad), (pad, pad), (0, 0))) + fill
    copies = ops.shape(matrices)[0]
    batch = ops.broadcast_to(image, (copies, *ops.shape(image)[1:]))
    return ops.image.affine_transform(
        batch, matrices, interpolation="bilinear", fill_mode="constant", fill_value=fill
    )


def random_transforms(
    rng: np.random.Generator, count: int, height: int, width: int, settings: TransformSettings
) -> np.ndarray:
    """Draw ``count`` random views as affine matrices for :func:`apply_transforms`.

    Each view zooms by ``s`` and turns by ``a`` about the padded canvas' centre,
    then shifts by ``(dy, dx)``. Five draws per view, always in the same order,
    so a seed gives the same views.

    Args:
        rng: The seeded generator.
        count: Number of views.
        height: Image height (before padding).
        width: Image width.
        settings: Ranges of the draws.

    Returns:
        float32 ``(count, 8)``.
    """
    rows = []
    cy = (height + 2 * settings.pad - 1) / 2.0
    cx = (width + 2 * settings.pad - 1) / 2.0
    for _ in range(count):
        low, high = settings.scale
        zoom = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        angle = math.radians(float(rng.uniform(-settings.degrees, settings.degrees)))
        dy = int(rng.integers(-settings.jitter, settings.jitter + 1))
        dx = int(rng.integers(-settings.jitter, settings.jitter + 1))
        rng.random()  # reserved draw: keeps the stream layout if a sixth parameter is added
        # Output (x, y) -> input: rotate by -angle and shrink by the zoom about the centre, then shift.
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        a0, a1 = cos, -sin
        b0, b1 = sin, cos
        a2 = cx - a0 * cx - a1 * cy - dx
        b2 = cy - b0 * cx - b1 * cy - dy
        rows.append([a0, a1, a2, b0, b1, b2, 0.0, 0.0])
    return np.asarray(rows, np.float32)
