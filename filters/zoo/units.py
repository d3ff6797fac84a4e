"""The units of a layer a user names: channels of a convolutional layer, or the units of a fully connected one.

Every filter and command that lets a user pick "a unit" (``saliency --target
channel|neuron``, ``hallucinate --layer/--channel``, ``explore similar
--layer``) resolves the layer here, so they agree on what a layer offers:

* a **spatial** layer (output ``B x H x W x C``: convolutions, their
  activations, pooling) offers ``C`` channels, each a map over positions;
* a **fully connected** layer (output ``B x N``: ``Dense`` hidden layers,
  the logits, VGG's ``fc1``/``fc2``, a global pooling) offers ``N`` units, each
  one number per image that depends on the *whole image* (its receptive field
  is the whole input; a "neuron position" has no meaning there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurofilters.plugin_host import ParameterError

__all__ = ["LayerUnits", "layer_units"]


@dataclass(frozen=True)
class LayerUnits:
    """What one layer offers as units.

    Attributes:
        name: Raw layer name.
        shape: Output shape without the batch axis (``(h, w, C)`` or ``(N,)``) at the model's probe size.
        kind: The layer's class name (``Dense``, ``Conv2D`` ...).
    """

    name: str
    shape: tuple[int | None, ...]
    kind: str

    @property
    def spatial(self) -> bool:
        """Whether the output is ``H x W x C`` (channels over positions)."""
        return len(self.shape) == 3

    @property
    def fully_connected(self) -> bool:
        """Whether the output is one vector per image (units that each see the whole image)."""
        return len(self.shape) == 1

    @property
    def count(self) -> int:
        """Channels (spatial layers) or units (fully connected layers)."""
        return int(self.shape[-1] or 0)

    @property
    def noun(self) -> str:
        """``"channel"`` or ``"unit"``, for messages."""
        return "channel" if self.spatial else "unit"

    def check_index(self, index: int, *, param: str = "channel") -> int:
        """``index`` if it names one of the layer's channels or units.

        Raises:
            ParameterError: Out of range (the message gives the range and the layer).
        """
        if not 0 <= int(index) < self.count:
            raise ParameterError(
                f'"{param}" must be between 0 and {self.count - 1} for layer {self.name!r} ({self.count} {self.noun}s). '
                f"Received: {param}={index}",
                param=param,
                value=index,
            )
        return int(index)


def layer_units(model: Any, layer: str, *, param: str = "layer", allow_fully_connected: bool = True) -> LayerUnits:
    """Resolve ``layer`` (a raw name or alias of ``model``) and say what units it offers.

    Args:
        model: A zoo model handle (``resolve_layer``, ``layer_table``).
        layer: What the user typed.
        param: The parameter named in errors.
        allow_fully_connected: ``False`` where only spatial layers make sense.

    Returns:
        The layer's :class:`LayerUnits`.

    Raises:
        ParameterError: Unknown layer (one line, with the nearest names), or a layer
            whose output is neither ``H x W x C`` nor one vector per image.
    """
    raw = model.resolve_layer(layer)
    if raw in getattr(model, "head_layers", ()):  # VGG's fully connected head: fc1, fc2, predictions
        head_layer = model.head_layer(raw)
        kind, full_shape = type(head_layer).__name__, tuple(head_layer.output.shape)
    else:
        info = next(row for row in model.layer_table() if row.name == raw)
        kind, full_shape = info.kind, tuple(info.output_shape)
    units = LayerUnits(raw, full_shape[1:], kind)
    if units.spatial or (units.fully_connected and allow_fully_connected):
        return units
    wanted = "a convolutional (H x W x C) or fully connected (one vector per image)" if allow_fully_connected else "a convolutional (H x W x C)"
    raise ParameterError(
        f'"{param}" must be {wanted} layer. Received: {param}={layer!r}, a {kind} with output shape '
        f"{full_shape}. Run 'neurofilters layers {model.name}' to see the layers.",
        param=param,
        value=layer,
    )
