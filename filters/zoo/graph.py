"""Which layers feed which in a Keras model, read from its public config (``Model.get_config``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["layer_calls"]

#: How a saved functional config marks a tensor argument (``keras_history``: producing layer, node, tensor).
_TENSOR = "__keras_tensor__"


def layer_calls(model: Any) -> dict[str, list[tuple[str, ...]]]:
    """Every layer's calls inside ``model``, each as the names of the layers producing its tensor inputs.

    Read from the functional config Keras saves (``layers[*].inbound_nodes``,
    each tensor argument naming its ``keras_history``), so only public API is
    used. A layer called twice (shared) has two entries; an input layer has
    none. Tensor arguments keep their order (positional arguments, then keyword
    arguments), repeated tensors included. A ``Sequential`` model's layers each
    take the previous layer's output.

    Args:
        model: A functional or ``Sequential`` ``keras.Model``.

    Returns:
        Layer name -> one tuple of producer names per call, for every layer of ``model``.

    Raises:
        ValueError: ``model`` has no serialisable config (a subclassed model);
            build it with the functional API.
    """
    try:
        config = model.get_config()
    except NotImplementedError as error:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no functional config to read its layer graph from "
            f"({error}); build it with the functional API (keras.Model(inputs, outputs))."
        ) from None
    entries = config.get("layers", []) if isinstance(config, dict) else []
    if entries and all("inbound_nodes" in entry for entry in entries):
        return {
            str(entry["name"]): [tuple(_producers(node)) for node in entry["inbound_nodes"]]
            for entry in entries
        }
    calls: dict[str, list[tuple[str, ...]]] = {}
    previous: str | None = None
    for entry in entries:  # Sequential: a chain from its input layer
        name = str(entry.get("name") or entry.get("config", {}).get("name"))
        calls[name] = [(previous,)] if previous is not None else []
        previous = name
    return calls


def _producers(value: Any) -> Iterator[str]:
    """Producer layer names of the serialised tensors inside one call's arguments, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == _TENSOR:
            yield str(value["config"]["keras_history"][0])
            return
        for key in ("args", "kwargs") if ("args" in value or "kwargs" in value) else sorted(value):
            yield from _producers(value.get(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _producers(item)
