"""TensorFlow implementation: one shape-generic graph per (model, loss), weights frozen, input gradient only.

The step is traced once for ``(None, None, None, 3)`` inputs, so a new image or
octave size never retraces, and the weights are then frozen into the graph as
constants: TensorFlow's graph optimiser (grappler, with oneDNN on x86) can then
fuse convolutions with what follows them, which it cannot do while the weights
are variables. Without XLA (``jit_compile=False``, the default) nothing is
compiled per shape; on CPU oneDNN's convolutions beat XLA's for both embedded
models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from . import GradientFn, LossFn


def _trace(feature_model: Any, loss_fn: LossFn) -> Any:
    def step(batch: tf.Tensor, shift: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Rolling inside the graph: the gradient comes back already un-rolled.
        rolled = tf.roll(batch, shift, axis=[1, 2])
        outputs = feature_model(rolled, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        losses = tf.reshape(loss_fn(list(outputs)), [-1])
        (gradient,) = tf.gradients(tf.reduce_sum(losses), [batch])
        return losses, gradient

    return step


def make_gradient_fn(feature_model: Any, loss_fn: LossFn, *, jit_compile: bool = False) -> GradientFn:
    """See :func:`neurofilters.filters.gradients.make_gradient_fn`."""
    step = _trace(feature_model, loss_fn)
    if jit_compile:
        # XLA needs static shapes: one compile per input size (reduce_retracing keeps
        # the Python tracing to a minimum).
        compiled = tf.function(step, reduce_retracing=True, jit_compile=True)
    else:
        concrete = tf.function(step).get_concrete_function(
            tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([2], tf.int32)
        )
        try:
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            compiled = convert_variables_to_constants_v2(concrete)
        except Exception:  # unusual graphs (e.g. stateful ops): run with variables
            compiled = concrete

    def run(batch: Any, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        inputs = tf.convert_to_tensor(np.asarray(batch, dtype=np.float32))
        losses, gradient = compiled(inputs, tf.constant([int(shift[0]), int(shift[1])], tf.int32))
        return losses.numpy(), gradient.numpy()

    run.step = compiled  # type: ignore[attr-defined]  # for benchmarks
    return run
