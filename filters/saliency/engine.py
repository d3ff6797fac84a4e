"""The ``saliency`` filter's run function: choose the target, run the method at the network's size, render at the image's."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from neurofilters.plugin_host import FilterContext, ParameterError

from ..attribution.methods import Attribution, compute, normalise, upsample
from ..attribution.network import Target, default_cam_layer, saliency_step, spatial_layers
from ..attribution.neuron import layer_output_size
from ..smoothing import gaussian_blur
from ..zoo.labels import resolve_class
from ..zoo.units import LayerUnits, layer_units
from .plugin import CAM_METHODS
from .render import render, smooth

__all__ = [
    "Explanation", "explain", "network_size", "resize_rgb", "resolve_target_class", "run", "saliency_map",
]

#: Methods whose map is sparse (per pixel): normalised by a high percentile, not the maximum.
SPARSE_METHODS = ("guided-backprop", "gradient", "smoothgrad", "integrated-gradients", "guided-grad-cam")
_TOP_RE = re.compile(r"^top-?(\d+)$", re.IGNORECASE)
#: Stride the network size is rounded to, so CAM cells line up with the image.
_SIZE_MULTIPLE = 32


@dataclass
class Explanation:
    """What :func:`explain` found, at the network's resolution.

    Attributes:
        attribution: The method's result.
        image: The image as the network saw it (``h x w x 3``).
        class_id: The explained class (``None`` for channel and neuron targets).
        class_name: Its label.
        cam_layer: The CAM layer used (``None`` for pixel methods).
        target_layer: The channel or neuron layer (``None`` for classes).
        fully_connected: The target layer is fully connected: its unit sees the whole image.
    """

    attribution: Attribution
    image: np.ndarray
    class_id: int | None
    class_name: str | None
    cam_layer: str | None
    target_layer: str | None
    fully_connected: bool = False


def network_size(model: Any, height: int, width: int) -> tuple[int, int]:
    """The size the network sees an image at: its fixed input, or its native area at the image's aspect.

    Fully convolutional networks with a global-pooling head (Lite0) run at the
    image's aspect ratio with the area of their native square (224 x 224),
    sides rounded to multiples of 32; networks with a fixed input, or with a
    separate fully connected head (VGG: 224 x 224), get that size.
    """
    shape = model.keras_model.inputs[0].shape
    if shape[1] is not None and shape[2] is not None:
        return int(shape[1]), int(shape[2])
    head_side = getattr(model, "head_input_size", None)
    if head_side:  # a separate fully connected head (VGG) classifies the image at one size: the network sees that
        return int(head_side), int(head_side)
    side = int(getattr(model, "input_size", None) or 224)
    scale = side / math.sqrt(float(height) * float(width))
    smallest = max(int(getattr(model, "min_size", 32) or 32), _SIZE_MULTIPLE)

    def rounded(length: int) -> int:
        return max(int(round(length * scale / _SIZE_MULTIPLE)) * _SIZE_MULTIPLE, smallest)

    return rounded(height), rounded(width)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of float RGB (antialiased when shrinking) to ``size = (height, width)``."""
    height, width = size
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image, np.float32)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], np.float32), mode="F").resize((width, height), Image.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def target_layer(model: Any, name: str, param: str = "target_layer") -> LayerUnits:
    """The layer of a channel or neuron target: a spatial layer, or a fully connected one (its units).

    ``auto`` is the last convolutional block. A fully connected (``Dense``) layer's
    unit is one number per image that sees the whole image: the channel and
    neuron targets are then the same (the neuron position is not used).

    Raises:
        ParameterError: Unknown layer (one line, with the nearest names) or a layer
            that has neither channels nor units (a 3-D or 5-D output).
    """
    if name == "auto":
        return layer_units(model, default_cam_layer(model.keras_model), param=param)
    return layer_units(model, name, param=param)


def _class_count(model: Any) -> int:
    head = getattr(model, "_classifier_head", None)
    output = (head or model.keras_model).outputs[0]
    return int(output.shape[-1])


def resolve_target_class(model: Any, value: int | str, image: np.ndarray) -> int:
    """The class id ``value`` names: ``top-N`` (ranked as ``classify`` ranks ``image``), an id or a name.

    The ranking is the model's one classification rule (:meth:`ZooModel.classify`:
    the central 87.5 % square, resized bicubically to the input size), so
    ``top-1`` is the class ``neurofilters classify`` and every other filter
    name for the same photo; the map itself still covers the whole image.

    Raises:
        ParameterError: Out-of-range rank or id, or an unknown name (with suggestions).
    """
    count = _class_count(model)
    labels = model.labels if model.labels and len(model.labels) == count else [f"class {i}" for i in range(count)]
    match = _TOP_RE.match(str(value).strip()) if isinstance(value, str) else None
    if match:
        rank = int(match.group(1))
        if not 1 <= rank <= count:
            raise ParameterError(
                f'"class" top-N must have N between 1 and {count}. Received: class={value!r}',
                param="class_", value=value,
            )
        return int(model.classify(image, top=rank)[rank - 1][0])
    return resolve_class(value, labels, param="class_")


def _baseline(kind: str, image: np.ndarray) -> np.ndarray:
    if kind == "black":
        return np.zeros_like(image)
    if kind == "white":
        return np.ones_like(image)
    if kind == "grey":
        return np.full_like(image, 0.5)
    return gaussian_blur(image, 0.05 * float(np.hypot(*image.shape[:2])))


def explain(
    model: Any,
    image: np.ndarray,
    params: dict[str, Any],
    *,
    rng: np.random.Generator | None = None,
    progress: Any = None,
    cam_upsampling: str = "bilinear",
) -> Explanation:
    """Run the method that ``params`` describe on an image, at the network's resolution.

    Args:
        model: A zoo model handle.
        image: float32 ``H x W x 3`` RGB in [0, 1], any size.
        params: The filter's validated parameters.
        rng: Noise generator for SmoothGrad.
        progress: ``progress(fraction, message)``.
        cam_upsampling: ``bilinear`` (the filter) or ``nearest`` (captum's choice, for cross-checks).

    Returns:
        The :class:`Explanation`.

    Raises:
        ParameterError: A class on a backbone, an unknown class or layer, a channel out of range.
    """
    method = params["method"]
    target_kind = params["target"]
    network = model.keras_model
    if target_kind == "class" and getattr(model, "kind", "classifier") != "classifier":
        raise ParameterError(
            f'Model {model.name!r} is a backbone without classes: set "target" to channel or neuron '
            f"(with target_layer and channel). Received: target=class, model={model.name!r}",
            param="target", value="class",
        )
    size = network_size(model, *image.shape[:2])
    seen = resize_rgb(image, size)
    cam_layer = model.spatial_layer(params["layer"], param="layer", layers=spatial_layers, auto=default_cam_layer) if method in CAM_METHODS else None
    class_id: int | None = None
    class_name: str | None = None
    target_layer_name: str | None = None
    spot = (0, 0)
    if target_kind == "class":
        class_id = resolve_target_class(model, params["class_"], image)  # ranked on the photo as classify ranks it
        selector = np.zeros(_class_count(model), np.float32)
        selector[class_id] = 1.0
        class_name = model.labels[class_id] if model.labels and class_id < len(model.labels) else f"class {class_id}"
        target = Target("class")
    else:
        units = target_layer(model, params["target_layer"])
        rows, cols, channels = (1, 1, units.count) if units.fully_connected else layer_output_size(network, units.name, size)
        if params["channel"] >= channels:
            raise ParameterError(
                f'"channel" must be an integer between 0 and {channels - 1} for layer {units.name!r} '
                f"({channels} {units.noun}s). Received: channel={params['channel']}",
                param="channel", value=params["channel"],
            )
        order = [layer.name for layer in network.layers] + list(getattr(model, "head_layers", ()))
        if cam_layer is not None and order.index(cam_layer) > order.index(units.name):
            raise ParameterError(
                f'"layer" (the CAM layer) must come before the target layer {units.name!r} or be it. '
                f"Received: layer={cam_layer!r}",
                param="layer", value=params["layer"],
            )
        selector = np.zeros(channels, np.float32)
        selector[params["channel"]] = 1.0
        spot = (min(int(params["neuron_y"] * rows), rows - 1), min(int(params["neuron_x"] * cols), cols - 1))
        target_layer_name = units.name
        # A fully connected unit has no position: channel and neuron are the same target (the unit's value).
        target = Target("channel" if units.fully_connected else target_kind, target_layer_name)
    rule = params.get("guided_relu6", "active")
    guided = None
    if method in ("guided-backprop", "guided-grad-cam"):
        guided = saliency_step(model, guided=True, target=target, cam_layer=None, rule=rule)
    # guided-backprop reads only the guided step: the plain one, a clone and a trace of its own (a second on an AVX2
    # laptop-class CPU), is not built for it
    plain = guided if method == "guided-backprop" and guided is not None else saliency_step(model, guided=False, target=target, cam_layer=cam_layer)
    attribution = compute(
        method, seen, plain=plain, guided=guided, selector=selector, spot=spot,
        samples=params["samples"], noise=params["noise"], steps=params["steps"],
        baseline=_baseline(params["baseline"], seen), batch_size=params["batch_size"],
        rng=rng, cam_upsampling=cam_upsampling, progress=progress,
    )
    fully_connected = target_layer_name is not None and units.fully_connected
    return Explanation(attribution, seen, class_id, class_name, cam_layer, target_layer_name, fully_connected)


def saliency_map(explanation: Explanation, size: tuple[int, int], method: str, smoothing: float) -> np.ndarray:
    """The normalised grey map (``H x W`` in [0, 1]) at the image's ``size``."""
    values = np.maximum(upsample(explanation.attribution.map, size, "bilinear"), 0.0)
    values = smooth(values, smoothing)
    return normalise(values, sparse=method in SPARSE_METHODS)


def run(image: np.ndarray, params: dict[str, Any], context: FilterContext) -> np.ndarray:
    """Compute the saliency map of ``image`` and render it (see the filter's declaration)."""
    image = np.ascontiguousarray(image, np.float32)
    context.progress(0.0, "Loading the model")
    model = context.load_model(params["model"])
    method = params["method"]

    def report(fraction: float, message: str) -> None:
        context.progress(0.1 + 0.8 * fraction, message)

    context.progress(0.05, f"Computing {method}")
    explanation = explain(model, image, params, rng=context.rng(0), progress=report)
    what = (
        f"class {explanation.class_id} ({explanation.class_name})"
        if explanation.class_id is not None
        else f"unit {params['channel']} of the fully connected layer {explanation.target_layer} (it sees the whole image)"
        if explanation.fully_connected
        else f"{params['target']} {params['channel']} of {explanation.target_layer}"
    )
    context.progress(0.9, f"Rendering the {method} map of {what}")
    smoothing = params["smoothing"]
    if params["display"] == "mask" and method in SPARSE_METHODS and smoothing <= 0:
        smoothing = 1.0  # a mask of scattered pixels is no mask
    grey = saliency_map(explanation, image.shape[:2], method, smoothing)
    context.emit("saliency", grey[:, :, None])
    result = render(image, grey, output=params["display"], colormap=params["colormap"],
                    opacity=params["opacity"], mask_coverage=params["mask_coverage"])
    context.report(f"{method} map of {what}")
    return result
