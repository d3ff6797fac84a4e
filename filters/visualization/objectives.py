"""What a feature visualisation raises (``hallucinate``, the atlas): a class (log-probability) or a channel or neuron of any layer.

Resolves the user's ``class`` / ``layer`` / ``channel`` parameters against a
zoo model (class names with near-miss suggestions come from
:func:`neurofilters.filters.zoo.labels.resolve_class`) and gives the
per-sample score as a ``keras.ops`` function of the layer's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurofilters.plugin_host import ParameterError

from ..zoo.units import layer_units

__all__ = ["Objective", "class_objective", "resolve_objective"]


@dataclass(frozen=True)
class Objective:
    """A score per sample on one layer's output.

    Attributes:
        layer: Raw layer name (``logits`` for a class).
        kind: ``"class"``, ``"channel"``, ``"neuron"`` or ``"unit"`` (of a fully connected layer).
        index: Class id, channel or unit index.
        label: Words for messages (``"class 130 (flamingo)"``).
    """

    layer: str
    kind: str
    index: int
    label: str

    def score(self, outputs: Any) -> Any:
        """``(B,)`` scores of a batch of the layer's outputs (``keras.ops``)."""
        from keras import ops

        if self.kind == "class":
            # The log-probability: raising it lowers the other classes too (p -> 1).
            return outputs[:, self.index] + ops.log_softmax(outputs, axis=-1)[:, self.index]
        if self.kind == "unit":
            return outputs[:, self.index]  # a fully connected unit: one value per image
        if self.kind == "neuron":
            height, width = ops.shape(outputs)[1], ops.shape(outputs)[2]
            return outputs[:, height // 2, width // 2, self.index]
        return ops.mean(outputs[..., self.index], axis=(1, 2))


def class_objective(model: Any, value: int | str, *, param: str = "target") -> Objective:
    """The objective "raise the probability of class ``value``" (an id or a name).

    Raises:
        ParameterError: Not a classifier, unknown class (with suggestions).
    """
    from ..zoo.labels import resolve_class

    if getattr(model, "kind", None) != "classifier" or not model.labels:
        raise ParameterError(
            f'"{param}" needs a classifier model; {model.name!r} has no class logits. '
            "Choose one such as lite0 (see 'neurofilters models'), or set a layer and a channel.",
            param="model",
            value=model.name,
        )
    index = resolve_class(value, model.labels, param=param)
    return Objective("logits", "class", index, f"class {index} ({model.labels[index]})")


def resolve_objective(model: Any, params: dict[str, Any]) -> Objective:
    """The objective the parameters ask for: ``layer`` logits (or empty) -> the class, else a channel/neuron or a unit.

    A convolutional layer gives a channel (its mean) or, with ``neuron``, the
    channel's centre neuron; a fully connected layer gives one of its units
    (``neuron`` does not apply: the unit sees the whole image).

    Args:
        model: A zoo model handle.
        params: Validated parameters with ``class_`` (the flag ``--class``), ``layer``, ``channel``, ``neuron``.

    Raises:
        ParameterError: Unknown class, layer, or a channel out of range.
    """
    layer = str(params.get("layer") or "").strip()
    if not layer or layer in ("logits", "class"):
        return class_objective(model, params["class_"], param="class_")
    units = layer_units(model, layer, param="layer")
    channel = units.check_index(int(params.get("channel", 0)))
    if units.fully_connected:
        # A fully connected unit (a hidden Dense layer, the logits, VGG's fc1/fc2) sees the whole image: no centre neuron.
        return Objective(units.name, "unit", channel, f"unit {channel} of {units.name}")
    kind = "neuron" if params.get("neuron") else "channel"
    return Objective(units.name, kind, channel, f"{kind} {channel} of {units.name}")

