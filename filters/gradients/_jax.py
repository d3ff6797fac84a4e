"""JAX implementation: ``jax.grad`` of a stateless model call, under ``jax.jit``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import GradientFn, LossFn


def make_gradient_fn(feature_model: Any, loss_fn: LossFn, *, jit_compile: bool = False) -> GradientFn:
    """See :func:`neurofilters.filters.gradients.make_gradient_fn` (``jit_compile`` is implied)."""
    del jit_compile  # JAX always compiles
    if not feature_model.built:
        # stateless_call needs the variables to exist; a subclassed wrapper
        # creates them on its first call.
        feature_model(np.zeros((1, 64, 64, 3), np.float32), training=False)
    trainable = [variable.value for variable in feature_model.trainable_variables]
    non_trainable = [variable.value for variable in feature_model.non_trainable_variables]

    def objective(
        batch: jax.Array, shift: jax.Array, trainable: list[Any], non_trainable: list[Any]
    ) -> tuple[jax.Array, jax.Array]:
        rolled = jnp.roll(batch, (shift[0], shift[1]), axis=(1, 2))
        outputs, _ = feature_model.stateless_call(trainable, non_trainable, rolled, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        losses = jnp.reshape(loss_fn(list(outputs)), (-1,))
        return jnp.sum(losses), losses

    # The weights are arguments, not closure constants, so XLA does not fold
    # them into the program (slow compiles, twice the memory).
    step = jax.jit(jax.grad(objective, argnums=0, has_aux=True))

    def run(batch: Any, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        gradient, losses = step(
            jnp.asarray(np.asarray(batch, dtype=np.float32)),
            jnp.asarray([int(shift[0]), int(shift[1])], jnp.int32),
            trainable,
            non_trainable,
        )
        # np.array, not np.asarray: JAX buffers are read-only, callers update gradients in place.
        return np.array(losses), np.array(gradient)

    return run
