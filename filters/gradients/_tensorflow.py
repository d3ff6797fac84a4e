"""TensorFlow implementation: one ``tf.function`` per (model, loss), input gradient only."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from . import GradientFn, LossFn


def make_gradient_fn(feature_model: Any, loss_fn: LossFn, *, jit_compile: bool = False) -> GradientFn:
    """See :func:`filters.gradients.make_gradient_fn`."""

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def step(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(batch)
            outputs = feature_model(batch, training=False)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            losses = tf.reshape(loss_fn(list(outputs)), [-1])
            total = tf.reduce_sum(losses)
        return losses, tape.gradient(total, batch)

    def run(batch: Any) -> tuple[np.ndarray, np.ndarray]:
        losses, gradient = step(tf.convert_to_tensor(np.asarray(batch, dtype=np.float32)))
        return losses.numpy(), gradient.numpy()

    run.step = step  # type: ignore[attr-defined]  # for benchmarks (concrete functions, traces)
    return run
