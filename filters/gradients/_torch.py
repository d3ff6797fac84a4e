"""PyTorch implementation: ``torch.autograd.grad`` with respect to the input only."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import torch

from . import GradientFn, LossFn


def make_gradient_fn(feature_model: Any, loss_fn: LossFn, *, jit_compile: bool = False) -> GradientFn:
    """See :func:`neurofilters.filters.gradients.make_gradient_fn` (``jit_compile`` is ignored)."""
    del jit_compile

    def run(batch: Any, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        inputs = keras.ops.convert_to_tensor(np.asarray(batch, dtype=np.float32)).detach().requires_grad_(True)
        with torch.enable_grad():
            rolled = torch.roll(inputs, (int(shift[0]), int(shift[1])), dims=(1, 2))
            outputs = feature_model(rolled, training=False)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            losses = torch.reshape(loss_fn(list(outputs)), (-1,))
            # Only the input is asked for: autograd skips the weights' gradients.
            (gradient,) = torch.autograd.grad(losses.sum(), inputs)
        return losses.detach().cpu().numpy(), gradient.detach().cpu().numpy()

    return run
