"""The seven saliency methods, on one image at the network's resolution, from a compiled score step.

Each method returns an :class:`Attribution`: the non-negative map shown to the
user and the signed attribution it came from (what the cross-checks compare).
Formulas:

* gradient (Simonyan et al. 2014): ``max_c |dS/dx|``.
* SmoothGrad (Smilkov et al. 2017): the mean of ``|dS/dx|`` over copies of the
  image with Gaussian noise of standard deviation ``noise * (max(x) - min(x))``,
  then the maximum over colour channels; the copies are differentiated in batches.
* integrated gradients (Sundararajan et al. 2017): ``(x - x0) * mean_k dS/dx(x0 +
  a_k (x - x0))`` with midpoints ``a_k = (k + 0.5) / steps``; the map is
  ``|sum_c|``.
* guided backpropagation: the gradient through guided rectifiers (see
  :mod:`neurofilters.filters.attribution.network`); the map is ``max_c |.|``.
* Grad-CAM (Selvaraju et al. 2017): ``relu(sum_k w_k A_k)`` with ``w_k`` the
  spatial mean of ``dS/dA_k``, upsampled to the image.
* Grad-CAM++ (Chattopadhyay et al. 2018): weights ``sum_ij a_ij relu(dS/dA)``
  with ``a = g^2 / (2 g^2 + sum_ij(A) g^3)``, normalised per channel as in the
  authors' code.
* guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..gradients import ScoreStepFn

__all__ = ["Attribution", "compute", "integrated_gradients", "normalise", "smoothgrad", "upsample"]

Progress = Callable[[float, str], None]


@dataclass
class Attribution:
    """A method's result at the network's resolution.

    Attributes:
        map: float32 ``h x w``, non-negative: the saliency shown.
        raw: The signed attribution: ``h x w x 3`` for pixel methods and
            guided Grad-CAM, the un-rectified ``h' x w'`` CAM for the CAM methods.
        score: The explained score on the clean image.
    """

    map: np.ndarray
    raw: np.ndarray
    score: float


def upsample(values: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resize a float ``h x w`` array to ``size = (height, width)`` (``bilinear``, ``bicubic`` or ``nearest``)."""
    height, width = size
    if values.shape == (height, width):
        return values.astype(np.float32)
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[mode]
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), resample), dtype=np.float32)


def normalise(values: np.ndarray, *, sparse: bool) -> np.ndarray:
    """Scale a non-negative map to [0, 1].

    Dense maps (CAMs) are divided by their maximum; sparse per-pixel gradient
    maps by their 99.5th percentile (clipped), so a few extreme pixels do not
    leave the rest black.
    """
    values = np.maximum(np.nan_to_num(values.astype(np.float32)), 0.0)
    top = float(np.percentile(values, 99.5)) if sparse else float(values.max())
    if not np.isfinite(top) or top <= 0:
        top = float(values.max())
    if top <= 0:
        return np.zeros_like(values)
    return np.clip(values / top, 0.0, 1.0)


def _batches(total: int, size: int) -> tuple[int, list[tuple[int, int]]]:
    """Equal chunks of at most ``size``: ``(chunk size, [(start, stop), ...])``.

    Every network call gets the same batch shape (the last chunk is padded by
    the caller), so a run compiles and tunes one shape only.
    """
    count = -(-total // max(size, 1))
    chunk = -(-total // count)
    return chunk, [(start, min(start + chunk, total)) for start in range(0, total, chunk)]


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` with its last sample repeated up to ``size`` samples."""
    if len(batch) == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - len(batch), axis=0)], axis=0)


def smoothgrad(
    step: ScoreStepFn, image: np.ndarray, selector: np.ndarray, spot: tuple[int, int], *,
    samples: int, noise: float, batch_size: int, rng: np.random.Generator, progress: Progress | None = None,
) -> np.ndarray:
    """Mean of ``|dS/dx|`` over noisy copies: float32 ``h x w x 3``."""
    sigma = float(noise) * float(image.max() - image.min())
    total = np.zeros(image.shape, np.float64)
    chunk, chunks = _batches(samples, batch_size)
    for index, (start, stop) in enumerate(chunks):
        noisy = image[None] + rng.normal(0.0, sigma, (stop - start, *image.shape)).astype(np.float32)
        _, grads, _, _ = step(_padded(noisy.astype(np.float32), chunk), selector, spot)
        total += np.abs(grads[: stop - start]).sum(axis=0)
        if progress is not None:
            progress((index + 1) / len(chunks), f"SmoothGrad: {stop} of {samples} samples")
    return (total / samples).astype(np.float32)


def integrated_gradients(
    step: ScoreStepFn, image: np.ndarray, baseline: np.ndarray, selector: np.ndarray, spot: tuple[int, int], *,
    steps: int, batch_size: int, progress: Progress | None = None,
) -> np.ndarray:
    """``(x - x0) * mean dS/dx`` along the straight path (midpoint rule): float32 ``h x w x 3``."""
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    difference = (image - baseline).astype(np.float32)
    total = np.zeros(image.shape, np.float64)
    chunk, chunks = _batches(steps, batch_size)
    for index, (start, stop) in enumerate(chunks):
        path = baseline[None] + alphas[start:stop, None, None, None] * difference[None]
        _, grads, _, _ = step(_padded(path.astype(np.float32), chunk), selector, spot)
        total += grads[: stop - start].sum(axis=0)
        if progress is not None:
            progress((index + 1) / len(chunks), f"Integrated gradients: {stop} of {steps} steps")
    return (difference * total / steps).astype(np.float32)


def grad_cam(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Un-rectified Grad-CAM ``sum_k mean_ij(dS/dA_k) A_k`` of one sample (``h' x w' x C`` inputs)."""
    weights = gradient.mean(axis=(0, 1))
    return np.tensordot(activation, weights, axes=([2], [0])).astype(np.float32)


def grad_cam_plus_plus(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Un-rectified Grad-CAM++ of one sample (see the module docstring)."""
    g = gradient.astype(np.float64)
    second, third = g**2, g**3
    denominator = 2.0 * second + activation.sum(axis=(0, 1), keepdims=True) * third
    alphas = second / np.where(denominator != 0.0, denominator, 1.0)
    norm = alphas.sum(axis=(0, 1), keepdims=True)
    alphas = alphas / np.where(norm != 0.0, norm, 1.0)
    weights = (alphas * np.maximum(g, 0.0)).sum(axis=(0, 1))
    return np.tensordot(activation.astype(np.float64), weights, axes=([2], [0])).astype(np.float32)


def compute(
    method: str,
    image: np.ndarray,
    *,
    plain: ScoreStepFn,
    guided: ScoreStepFn | None,
    selector: np.ndarray,
    spot: tuple[int, int] = (0, 0),
    samples: int = 32,
    noise: float = 0.15,
    steps: int = 32,
    baseline: np.ndarray | None = None,
    batch_size: int = 16,
    rng: np.random.Generator | None = None,
    cam_upsampling: str = "bilinear",
    progress: Progress | None = None,
) -> Attribution:
    """Run one method on one image.

    Args:
        method: One of :data:`neurofilters.filters.saliency.plugin.METHODS`.
        image: float32 ``h x w x 3`` RGB in [0, 1] at the network's resolution.
        plain: Step with the network's true gradient (with a CAM layer for the CAM methods).
        guided: Step through guided rectifiers (guided-backprop, guided-grad-cam).
        selector: One-hot over the scores (classes or channels).
        spot: Neuron position in the target layer's grid.
        samples: SmoothGrad sample count.
        noise: SmoothGrad noise level (fraction of the value range).
        steps: Integrated-gradients path points.
        baseline: Integrated-gradients start image (black when ``None``).
        batch_size: Samples or path points per network call.
        rng: Noise generator (SmoothGrad).
        cam_upsampling: How CAMs are brought to the image (``bilinear``; ``nearest`` as captum does).
        progress: ``progress(fraction, message)`` within this method.

    Returns:
        The :class:`Attribution`.
    """
    image = np.ascontiguousarray(image, np.float32)
    size = image.shape[:2]
    batch = image[None]
    if method in ("grad-cam", "grad-cam++", "guided-grad-cam"):
        scores, _, activation, gradient = plain(batch, selector, spot)
        cam_fn = grad_cam_plus_plus if method == "grad-cam++" else grad_cam
        cam = cam_fn(activation[0], gradient[0])
        rectified = upsample(np.maximum(cam, 0.0), size, cam_upsampling)
        if method != "guided-grad-cam":
            return Attribution(np.maximum(rectified, 0.0), cam, float(scores[0]))
        assert guided is not None
        _, pixels, _, _ = guided(batch, selector, spot)
        raw = pixels[0] * rectified[:, :, None]
        return Attribution(np.abs(raw).max(axis=2), raw, float(scores[0]))
    if method == "guided-backprop":
        assert guided is not None
        scores, pixels, _, _ = guided(batch, selector, spot)
        return Attribution(np.abs(pixels[0]).max(axis=2), pixels[0], float(scores[0]))
    scores, pixels, _, _ = plain(batch, selector, spot)
    if method == "gradient":
        return Attribution(np.abs(pixels[0]).max(axis=2), pixels[0], float(scores[0]))
    if method == "smoothgrad":
        generator = rng if rng is not None else np.random.default_rng(0)
        mean = smoothgrad(plain, image, selector, spot, samples=samples, noise=noise, batch_size=batch_size,
                          rng=generator, progress=progress)
        return Attribution(mean.max(axis=2), mean, float(scores[0]))
    if method == "integrated-gradients":
        start = np.zeros_like(image) if baseline is None else np.asarray(baseline, np.float32)
        raw = integrated_gradients(plain, image, start, selector, spot, steps=steps, batch_size=batch_size,
                                   progress=progress)
        return Attribution(np.abs(raw.sum(axis=2)), raw, float(scores[0]))
    raise ValueError(f"Unknown saliency method. Received: method={method!r}")
