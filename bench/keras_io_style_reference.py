"""The keras-io neural style transfer algorithm, written here as the reference for ``bench_texture.py``.

What keras-io's example does (hyperparameters in ../shared/DESIGN.md section 6): the loss is
``content_weight * Σ(F - P)²`` at the content layer plus, per style layer,
``style_weight / n_layers * Σ(S - C)² / (4 * 3² * (H W)²)`` with unnormalised Gram matrices
``S = Fᵀ F`` of the style image and ``C`` of the result (the hard-coded 3 channels included; ``H W``
is the *image's* size at every layer, ``img_nrows * img_ncols``, not the layer's), plus a
total-variation term; the image starts as the content and takes plain SGD steps with learning rate
100 decayed by 0.96 every 100 steps, in the network's preprocessed pixel units (0..255). The whole
image is differentiated at once by autodiff. Here it runs on the network and layers it is compared
on (the benchmark passes them), so only the algorithm differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["keras_io_loss_fn", "run_reference"]


def keras_io_loss_fn(n_style: int, content_weight: float, style_weight: float, pixels: int) -> Callable[[Sequence[Any], Sequence[Any]], Any]:
    """keras-io's loss as ``loss(outputs, extras)``; ``extras`` = style Gram targets (unnormalised), content features.

    ``pixels`` is the image's height times width: keras-io divides every style layer's term by its square.
    """
    from keras import ops

    norm = 4.0 * 9.0 * float(pixels) ** 2

    def loss(outputs: Sequence[Any], extras: Sequence[Any]) -> Any:
        total = content_weight * ops.sum(ops.square(outputs[-1] - extras[-1]))
        for index in range(n_style):
            feature = outputs[index]
            flat = ops.reshape(feature, (-1, ops.shape(feature)[-1]))
            gram = ops.matmul(ops.transpose(flat), flat)
            total = total + style_weight / n_style * ops.sum(ops.square(extras[index] - gram)) / norm
        return total

    return loss


def run_reference(
    network: Any, content: np.ndarray, style: np.ndarray, n_style: int, *, steps: int = 1000,
    content_weight: float = 2.5e-8, style_weight: float = 1e-6, learning_rate: float = 100.0,
) -> tuple[np.ndarray, list[float], list[float]]:
    """Run keras-io's SGD schedule; returns the image, the loss before each step and the elapsed seconds.

    ``network`` is a :class:`neurofilters.filters.gradients.CompiledNetwork` whose outputs are the
    style layers then the content layer, on RGB [0, 1] input; a step of ``lr`` in 0..255 units is a
    step of ``lr / 255²`` times the [0, 1] gradient in [0, 1] units.
    """
    style_features = network.forward(style)
    targets = [f.reshape(-1, f.shape[-1]).T @ f.reshape(-1, f.shape[-1]) for f in style_features[:n_style]]
    content_target = network.forward(content)[-1]
    loss_fn = keras_io_loss_fn(n_style, content_weight, style_weight, content.shape[0] * content.shape[1])
    image = content.astype(np.float32).copy()
    losses, times = [], []
    network.value_and_grad(1, loss_fn, image, [*targets, content_target])  # compile outside the timing
    start = time.perf_counter()
    for step in range(steps):
        rate = learning_rate * 0.96 ** (step // 100)
        loss, gradient = network.value_and_grad(1, loss_fn, image, [*targets, content_target])
        losses.append(loss)
        times.append(time.perf_counter() - start)
        image = image - rate / 255.0**2 * gradient
    loss, _ = network.value_and_grad(1, loss_fn, image, [*targets, content_target])
    losses.append(loss)
    times.append(time.perf_counter() - start)
    return image, losses, times
