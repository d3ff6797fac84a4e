"""Exact receptive fields of a layer's positions, from kernel sizes, strides, dilations and padding.

Written here because no maintained Keras 3 library computes them (the usual
formula ignores TensorFlow's "same" padding, which pads *more after than
before* when the total is odd, e.g. a stride-2 3x3 convolution on an even
input). The Keras graph (read from the model's public config) is walked from the input to the layer; per axis each
tensor carries an affine map ``first input index = jump * i + start`` and a
size, composed layer by layer:

* convolution / pooling with kernel ``k``, stride ``s``, dilation ``d`` and
  padding-before ``p`` (for "same": ``total = max((ceil(n/s)-1) s + (k-1) d + 1 - n, 0)``,
  ``p = total // 2``): ``jump *= s``, ``start -= p * jump_in``, ``size += (k-1) d jump_in``;
* explicit zero padding shifts ``start``; element-wise layers (batch norm,
  activations, add, multiply) keep the map (several inputs: the union);
* a global pooling, ``Flatten`` or fully connected (``Dense``) layer has one
  position that sees every input position: the whole image (``jump`` 0,
  ``length`` 1; :attr:`ReceptiveField.fully_connected`), and so do the layers after it.

The result is exact for every position, including the image border, where a
field is clipped to the image (:meth:`ReceptiveField.box`). A dilated kernel sees a lattice
inside that box (holes between its taps); the box is the lattice's bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from neurofilters.plugin_host import ParameterError

__all__ = ["AxisField", "ReceptiveField", "receptive_field"]


@dataclass(frozen=True)
class AxisField:
    """One axis: position ``i`` of the layer sees input indices ``[jump*i + start, jump*i + start + size)``.

    Attributes:
        jump: Input pixels between neighbouring positions (the product of strides).
        start: First input index seen by position 0 (negative: it reaches into the padding).
        size: Receptive field size in input pixels.
        length: The layer's size along this axis for the given input.
    """

    jump: int
    start: int
    size: int
    length: int

    def span(self, index: int) -> tuple[int, int]:
        """Unclipped ``[first, last + 1)`` input indices seen by position ``index``."""
        first = self.jump * int(index) + self.start
        return first, first + self.size


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive fields of one layer for one input size.

    Attributes:
        layer: Raw layer name.
        input_shape: ``(height, width)`` of the input.
        rows: The vertical axis.
        cols: The horizontal axis.
    """

    layer: str
    input_shape: tuple[int, int]
    rows: AxisField
    cols: AxisField

    @property
    def fully_connected(self) -> bool:
        """Whether the layer has one position that sees every input position (a ``Dense`` unit, a global pooling).

        Its box is then the whole image, except pixels no unit of the network
        reads at all ("valid" convolutions can leave out the last row or column).
        """
        return self.rows.jump == 0 and self.cols.jump == 0

    @property
    def whole_image(self) -> bool:
        """Whether every position sees the whole image (fully connected units, global pooling)."""
        height, width = self.input_shape
        return all(
            axis.jump * (axis.length - 1) + axis.start <= 0 and axis.start + axis.size >= extent
            for axis, extent in ((self.rows, height), (self.cols, width))
        )

    @property
    def output_shape(self) -> tuple[int, int]:
        """The layer's spatial ``(height, width)`` for :attr:`input_shape`."""
        return self.rows.length, self.cols.length

    def box(self, y: int, x: int, *, clip: bool = True) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` (exclusive) input box seen by position ``(y, x)``.

        Args:
            y: Row of the layer's output.
            x: Column of the layer's output.
            clip: Clip to the image (``False``: the full field, reaching into the padding).
        """
        top, bottom = self.rows.span(y)
        left, right = self.cols.span(x)
        if clip:
            height, width = self.input_shape
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, height), min(right, width)
        return top, left, bottom, right


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _windowed(axis: AxisField, kernel: int, stride: int, dilation: int, padding: str) -> AxisField:
    """Compose a field with one window operation (convolution or pooling) along one axis."""
    n = axis.length
    span = (kernel - 1) * dilation + 1
    if padding == "same":
        out = math.ceil(n / stride)
        before = max((out - 1) * stride + span - n, 0) // 2
    elif padding == "valid":
        out = (n - span) // stride + 1
        before = 0
    else:
        raise ParameterError(f"Receptive fields support 'same' and 'valid' padding. Received: padding={padding!r}")
    if out < 1:
        raise ParameterError(f"The input is too small for this layer (an axis of {n} px under a {span}-px window).")
    return AxisField(
        jump=axis.jump * stride,
        start=axis.start - before * axis.jump,
        size=axis.size + (span - 1) * axis.jump,
        length=out,
    )


def _layer_fields(layer: Any, inputs: list[tuple[AxisField, AxisField]]) -> tuple[AxisField, AxisField]:
    """The output field of ``layer`` given its inputs' fields."""
    import keras

    config = layer.get_config()
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, _bottom), (left, _right) = config["padding"]
        (rows, cols), = inputs
        lengths = (rows.length + sum(config["padding"][0]), cols.length + sum(config["padding"][1]))
        return (
            AxisField(rows.jump, rows.start - top * rows.jump, rows.size, lengths[0]),
            AxisField(cols.jump, cols.start - left * cols.jump, cols.size, lengths[1]),
        )
    if "kernel_size" in config or "pool_size" in config:
        if config.get("data_format", "channels_last") != "channels_last":
            raise ParameterError(f"Layer {layer.name!r}: only channels_last layers are supported.")
        kernel = _pair(config.get("kernel_size") or config["pool_size"])
        strides = _pair(config.get("strides") or kernel)
        dilation = _pair(config.get("dilation_rate", 1))
        padding = str(config.get("padding", "valid")).lower()
        (rows, cols), = inputs
        return (
            _windowed(rows, kernel[0], strides[0], dilation[0], padding),
            _windowed(cols, kernel[1], strides[1], dilation[1], padding),
        )
    if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten, keras.layers.Dense)):
        # One position that sees all of its input's positions: the whole image (a Dense after a Dense stays so).
        (rows, cols), = inputs
        return _whole(rows), _whole(cols)
    if any(key in config for key in ("size", "cropping", "strides")):
        raise ParameterError(f"Layer {layer.name!r} ({type(layer).__name__}) changes the geometry in a way receptive fields do not support yet.")
    # Element-wise (batch norm, activations, add, multiply, concatenate ...): union of the inputs.
    rows = _union([pair[0] for pair in inputs], layer.name)
    cols = _union([pair[1] for pair in inputs], layer.name)
    return rows, cols


def _whole(axis: AxisField) -> AxisField:
    """One position seeing every position of ``axis``: from the first one's first pixel to the last one's last."""
    end = axis.jump * (axis.length - 1) + axis.start + axis.size
    return AxisField(0, axis.start, end - axis.start, 1)


def _union(fields: list[AxisField], name: str) -> AxisField:
    if len({(f.jump, f.length) for f in fields}) != 1:
        raise ParameterError(f"Layer {name!r} merges tensors of different geometry; receptive fields are not defined.")
    start = min(f.start for f in fields)
    end = max(f.start + f.size for f in fields)
    return AxisField(fields[0].jump, start, end - start, fields[0].length)


def receptive_field(keras_model: Any, layer_name: str, input_shape: tuple[int, int]) -> ReceptiveField:
    """The exact receptive fields of ``layer_name``'s positions for an input of ``input_shape``.

    Args:
        keras_model: A functional Keras model (the zoo's ``ZooModel.keras_model``; its
            preprocessing is element-wise, so the geometry is that of the RGB image).
        layer_name: Raw layer name.
        input_shape: ``(height, width)`` of the input image.

    Returns:
        The layer's :class:`ReceptiveField`.

    Raises:
        ParameterError: A layer kind whose geometry is unknown, a non-spatial layer.
    """
    from ..zoo.graph import layer_calls

    height, width = int(input_shape[0]), int(input_shape[1])
    calls = layer_calls(keras_model)
    target = keras_model.get_layer(layer_name)
    memo: dict[str, tuple[AxisField, AxisField]] = {}

    def field_of(name: str) -> tuple[AxisField, AxisField]:
        if name in memo:
            return memo[name]
        first_call = calls[name][0] if calls.get(name) else ()
        inputs = [field_of(producer) for producer in first_call]
        if not inputs:  # an InputLayer
            result = (AxisField(1, 0, 1, height), AxisField(1, 0, 1, width))
        else:
            result = _layer_fields(keras_model.get_layer(name), inputs)
        memo[name] = result
        return result

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        rows, cols = field_of(target.name)
    finally:
        sys.setrecursionlimit(limit)
    return ReceptiveField(layer_name, (height, width), rows, cols)
