"""Per-backend derivatives of a score with respect to the image *and* one layer's activations (attribution).

:func:`neurofilters.filters.gradients.make_gradient_fn` differentiates with respect to the image
only; the CAM methods of attribution maps also need the gradient with respect to an inner layer's
activations, so this module holds the small per-backend part for that.
TensorFlow and torch differentiate with respect to the recorded activation
tensor directly; JAX, which differentiates functions rather than tensors, adds
a zero ``delta`` at that layer and differentiates with respect to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from . import ScoreForward, ScoreStepFn

__all__ = ["compile_score_step"]


def compile_score_step(forward: ScoreForward, *, with_activation: bool, freeze: bool = True, variables: Sequence[Any] = ()) -> ScoreStepFn:
    """Compile ``forward`` with its derivatives for the active Keras backend.

    Args:
        forward: See :data:`~neurofilters.filters.gradients.ScoreForward`.
        with_activation: Whether ``forward`` records a layer activation whose
            gradient is wanted (CAM methods).
        freeze: TensorFlow: fold ``variables`` into the graph as constants
            (faster); ``False`` keeps them as variables, so later changes to
            the weights (the sanity checks' randomisation) are seen.
        variables: The Keras variables ``forward`` reads (frozen on TensorFlow).

    Returns:
        See :data:`~neurofilters.filters.gradients.ScoreStepFn`. The gradient is of the *sum* of the per-sample
        scores, which for independent samples is each sample's own gradient.

    Raises:
        RuntimeError: The Keras backend has no implementation here.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(forward, with_activation, variables if freeze else ())
    if backend == "jax":
        return _jax(forward, with_activation)
    if backend == "torch":
        return _torch(forward, with_activation)
    raise RuntimeError(
        f"Saliency is implemented for the Keras backends tensorflow, jax and torch. "
        f"Received: KERAS_BACKEND={backend!r}; set KERAS_BACKEND to one of those."
    )


def _tensorflow(forward: ScoreForward, with_activation: bool, frozen: Sequence[Any]) -> ScoreStepFn:
    import tensorflow as tf

    from ._tensorflow import trace_frozen

    def step(images: Any, selector: Any, spot: Any) -> tuple[Any, ...]:
        scores, activation = forward(images, selector, spot, None)
        total = tf.reduce_sum(scores)
        if not with_activation:
            (grad_images,) = tf.gradients(total, [images])
            return scores, grad_images
        grad_images, grad_activation = tf.gradients(total, [images, activation])
        if grad_activation is None:
            raise ValueError(
                "The score does not depend on the recorded activation: the CAM layer comes after the target layer. "
                "Choose a cam_layer at or before the target's layer."
            )
        return scores, grad_images, activation, grad_activation

    # weights as constants: grappler fuses convolutions with what follows (6x faster here)
    signature = (tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None], tf.float32), tf.TensorSpec([2], tf.int32))
    compiled = trace_frozen(step, signature, frozen)

    def run(images: np.ndarray, selector: np.ndarray, spot: tuple[int, int]) -> tuple[Any, Any, Any, Any]:
        outputs = compiled(
            tf.convert_to_tensor(np.asarray(images, np.float32)),
            tf.convert_to_tensor(np.asarray(selector, np.float32)),
            tf.constant([int(spot[0]), int(spot[1])], tf.int32),
        )
        values = [output.numpy() for output in outputs]
        return tuple(values) if with_activation else (values[0], values[1], None, None)  # type: ignore[return-value]

    return run


def _jax(forward: ScoreForward, with_activation: bool) -> ScoreStepFn:
    import jax
    import jax.numpy as jnp

    def objective(images: Any, delta: Any, selector: Any, spot: Any) -> tuple[Any, tuple[Any, Any]]:
        scores, activation = forward(images, selector, spot, delta)
        return jnp.sum(scores), (scores, activation)

    grad = jax.jit(jax.grad(objective, argnums=(0, 1), has_aux=True))
    shape_of = jax.jit(lambda images, selector, spot: forward(images, selector, spot, None)[1])

    def run(images: np.ndarray, selector: np.ndarray, spot: tuple[int, int]) -> tuple[Any, Any, Any, Any]:
        x = jnp.asarray(np.asarray(images, np.float32))
        s = jnp.asarray(np.asarray(selector, np.float32))
        p = jnp.asarray([int(spot[0]), int(spot[1])], jnp.int32)
        delta = None
        if with_activation:
            spec = jax.eval_shape(shape_of, x, s, p)
            delta = jnp.zeros(spec.shape, spec.dtype)
        (grad_images, grad_delta), (scores, activation) = grad(x, delta, s, p)
        if not with_activation:
            return np.array(scores), np.array(grad_images), None, None
        return np.array(scores), np.array(grad_images), np.array(activation), np.array(grad_delta)

    return run


def _torch(forward: ScoreForward, with_activation: bool) -> ScoreStepFn:
    import torch

    def run(images: np.ndarray, selector: np.ndarray, spot: tuple[int, int]) -> tuple[Any, Any, Any, Any]:
        x = keras.ops.convert_to_tensor(np.asarray(images, np.float32)).detach().requires_grad_(True)
        s = keras.ops.convert_to_tensor(np.asarray(selector, np.float32))
        p = keras.ops.convert_to_tensor(np.asarray([int(spot[0]), int(spot[1])], np.int32))
        with torch.enable_grad():
            scores, activation = forward(x, s, p, None)
            targets = [x, activation] if with_activation else [x]
            grads = torch.autograd.grad(scores.sum(), targets)
        out = [scores.detach().cpu().numpy(), grads[0].detach().cpu().numpy()]
        if with_activation:
            out += [activation.detach().cpu().numpy(), grads[1].detach().cpu().numpy()]
        else:
            out += [None, None]
        return tuple(out)  # type: ignore[return-value]

    return run
