"""One unit's guided backprop on an image as given (``explore patches --maps``), and the size of a layer's output.

The same compiled step and method as ``saliency --method guided-backprop --target neuron``,
so a patch's map is the saliency filter's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofilters.plugin_host import ParameterError

from .methods import Attribution, compute
from .network import Target, saliency_step

__all__ = ["layer_output_size", "neuron_guided_backprop"]


def layer_output_size(network: Any, layer: str, size: tuple[int, int]) -> tuple[int, int, int]:
    """``(rows, cols, channels)`` of ``layer`` for an input of ``size``; a fully connected layer is ``(1, 1, units)``."""
    import keras

    probe = keras.Model(network.inputs, network.get_layer(layer).output)
    spec = probe.compute_output_spec(keras.KerasTensor((1, size[0], size[1], 3)))
    if len(spec.shape) == 2:
        return 1, 1, int(spec.shape[1])
    return int(spec.shape[1]), int(spec.shape[2]), int(spec.shape[3])


def neuron_guided_backprop(
    model: Any, seen: np.ndarray, layer: str, channel: int, position: tuple[int, int], *, rule: str = "active"
) -> Attribution:
    """Guided backprop of one unit (``channel`` of ``layer`` at grid ``position``) on ``seen`` exactly as given.

    The same computation as ``saliency --method guided-backprop --target neuron``
    (the same compiled step and method), but on an image the caller already
    sized: nothing is resized, so ``position`` is a cell of ``layer``'s output
    for ``seen`` itself (``explore patches --maps`` passes the array its search saw).

    Args:
        model: A zoo model handle.
        seen: float32 ``h x w x 3`` RGB in [0, 1], the network's input.
        layer: Raw name of a layer with a spatial output.
        channel: Channel index in ``layer``.
        position: ``(row, column)`` in ``layer``'s output grid for ``seen``.
        rule: Guided ReLU6 rule (see :data:`~.network.GUIDED_RELU6_RULES`).

    Returns:
        The :class:`~.methods.Attribution` at ``seen``'s size (``map`` is ``h x w``).

    Raises:
        ParameterError: ``channel`` or ``position`` outside the layer's output for ``seen``.
    """
    image = np.ascontiguousarray(seen[:, :, :3], np.float32)
    rows, cols, channels = layer_output_size(model.keras_model, layer, image.shape[:2])
    if not 0 <= channel < channels:
        raise ParameterError(
            f'"channel" must be between 0 and {channels - 1} for layer {layer!r}. Received: channel={channel}',
            param="channel", value=channel,
        )
    row, col = (int(position[0]), int(position[1]))
    if not (0 <= row < rows and 0 <= col < cols):
        raise ParameterError(
            f'"position" must be a cell of the {rows} x {cols} output of {layer!r} for a {image.shape[0]} x '
            f"{image.shape[1]} image. Received: position={(row, col)}",
            param="position", value=(row, col),
        )
    selector = np.zeros(channels, np.float32)
    selector[channel] = 1.0
    guided = saliency_step(model, guided=True, target=Target("neuron", layer), cam_layer=None, rule=rule)
    # guided backprop runs the guided step only: it is passed as the plain one too, so nothing else compiles
    return compute("guided-backprop", image, plain=guided, guided=guided, selector=selector, spot=(row, col))
