"""The model :meth:`ZooModel.feature_model` returns (imports Keras: load it lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

__all__ = ["FeatureExtractor"]


class FeatureExtractor(keras.Model):
    """RGB [0, 1] images -> a list of layer outputs, always a list (even for one layer).

    Keras' functional models return a bare tensor when they have one output;
    filters iterate over the outputs, so this wrapper keeps the list.

    Attributes:
        layer_names: The raw names of the layers whose outputs are returned, in order.
        graph: The functional model doing the work (preprocessing included).
    """

    def __init__(self, graph: keras.Model, layer_names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.graph = graph
        self.layer_names = tuple(layer_names)

    def call(self, images: Any, training: bool = False) -> list[Any]:
        """Run the images through the network up to the requested layers."""
        outputs = self.graph(images, training=training)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
