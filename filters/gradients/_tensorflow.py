"""TensorFlow implementation: one shape-generic graph per (model, loss), weights frozen, input gradient only.

The step is traced once for ``(None, None, None, 3)`` inputs, so a new image or
octave size never retraces, and the weights are frozen into the graph as
constants while it is traced (:func:`trace_frozen`: a ``keras.StatelessScope``
maps every weight to a copy of its value, which becomes a ``Const`` node of the
graph): TensorFlow's graph optimiser (grappler, with oneDNN on x86) can then
fuse convolutions with what follows them, which it cannot do while the weights
are variables. Without XLA (``jit_compile=False``, the default) nothing is
compiled per shape; on CPU oneDNN's convolutions beat XLA's for both embedded
models. Every trace runs without AutoGraph (``autograph=False``): the steps hold
no tensor-dependent Python control flow, and converting each Keras call cost
about a third of a saliency filter's first call (grad-cam 2.9 -> 2.2 s,
guided-backprop 3.2 -> 2.4 s on lite0 at 512², 2-core Xeon under the AVX2 cap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from . import GradientFn, LossFn

__all__ = ["make_gradient_fn", "trace_frozen"]


def trace_frozen(step: Callable[..., Any], signature: Sequence[tf.TensorSpec], variables: Sequence[Any]) -> Any:
    """Trace ``step`` once for ``signature`` with ``variables`` read as constants of their current values.

    Inside the trace a ``keras.StatelessScope`` maps each Keras variable to its
    value taken now, so the graph holds the weights as ``Const`` nodes (later
    changes to the variables are not seen) and grappler can fold them into the
    convolutions. Variables not listed are read as variables.

    Args:
        step: A function of TensorFlow tensors using Keras layers.
        signature: One ``tf.TensorSpec`` per argument of ``step``.
        variables: The Keras variables ``step`` reads (``model.variables``).

    Returns:
        A ``tf.types.experimental.ConcreteFunction`` of ``signature``.
    """
    mapping = [(variable, variable.numpy()) for variable in {id(v): v for v in variables}.values()]
    if not mapping:  # nothing to freeze: the variables stay variables
        return tf.function(step, autograph=False).get_concrete_function(*signature)

    def frozen(*args: Any) -> Any:
        with keras.StatelessScope(state_mapping=mapping):
            return step(*args)

    concrete = tf.function(frozen, autograph=False).get_concrete_function(*signature)
    mapping.clear()  # the graph holds the values now; a concrete function never traces again
    return concrete


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
        compiled = tf.function(step, reduce_retracing=True, jit_compile=True, autograph=False)
    else:
        signature = (tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([2], tf.int32))
        compiled = trace_frozen(step, signature, getattr(feature_model, "variables", ()))

    def run(batch: Any, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        inputs = tf.convert_to_tensor(np.asarray(batch, dtype=np.float32))
        losses, gradient = compiled(inputs, tf.constant([int(shift[0]), int(shift[1])], tf.int32))
        return losses.numpy(), gradient.numpy()

    run.step = compiled  # type: ignore[attr-defined]  # for benchmarks
    return run
