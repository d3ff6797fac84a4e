"""The network a saliency method differentiates: the zoo model walked layer by layer, ReLUs optionally guided.

Nothing of the user's model is changed. The network is a clone with batch norms
folded into their convolutions (:func:`neurofilters.filters.gradients._network.prepare_network`);
its functional graph is then *run* layer by layer, which lets this module

* record one layer's activation (the CAM layer) and another's output (a
  channel or neuron target) during the same pass,
* replace rectifiers by guided ones at call time (layers with a built-in
  ``relu`` activation run as a linear twin followed by the guided unit), and
* read the class score before a final softmax (saliency explains the logit).

**Guided backpropagation.** At a ReLU the backward pass keeps a gradient only
where the unit was active going forward *and* the gradient arriving from above
is positive: ``g_in = max(g_out, 0) * [x > 0]`` (Springenberg et al. 2015).

**Guided ReLU6 (our rule, "active").** ReLU6 is ``min(max(x, 0), 6)``; its true
derivative is zero where the unit saturates (``x >= 6``). A saturated unit is the
most strongly *on*, so cutting the gradient there would hide the strongest
evidence (in Lite0 many head units saturate on the object). The guided ReLU6
therefore gates on activity only, exactly like a guided ReLU:
``g_in = max(g_out, 0) * [x > 0]``. The alternative ``"unsaturated"`` rule
(``[0 < x < 6]``, the true derivative) is available as a parameter. The
non-guided methods (gradient, SmoothGrad, integrated gradients, Grad-CAM) use
the network's true gradient everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

from ..gradients._network import prepare_network
from ._autodiff import StepFn, compile_step

__all__ = ["GUIDED_RELU6_RULES", "Target", "default_cam_layer", "forget", "prepared_network", "guided_relu", "saliency_step", "spatial_layers"]

#: How a guided backward pass treats a saturated ReLU6 unit.
GUIDED_RELU6_RULES = ("active", "unsaturated")

_LOCK = threading.Lock()
_STEPS: dict[tuple[Any, ...], tuple[Any, StepFn]] = {}
_PREPARED: dict[int, tuple[Any, Any]] = {}
_SKIPPED_KINDS = ("Pooling", "ZeroPadding", "Dropout", "Cropping", "InputLayer", "Flatten", "Reshape")


@dataclass(frozen=True)
class Target:
    """What the saliency explains.

    Attributes:
        kind: ``"class"`` (a logit), ``"channel"`` (a channel's mean over the
            image) or ``"neuron"`` (a channel at one position).
        layer: Raw layer name of the channel or neuron (``None`` for classes).
    """

    kind: str
    layer: str | None = None


def guided_relu(upper: float | None, rule: str = "active") -> Callable[[Any], Any]:
    """A rectifier whose backward pass is guided (see the module docstring).

    Args:
        upper: ``None`` for ReLU, ``6.0`` for ReLU6 (any cap works).
        rule: For capped units: ``"active"`` gates the gradient on ``x > 0``,
            ``"unsaturated"`` on ``0 < x < upper``.

    Returns:
        A function of one tensor, written with ``keras.ops.custom_gradient``.
    """
    if rule not in GUIDED_RELU6_RULES:
        raise ValueError(f"rule must be one of {', '.join(GUIDED_RELU6_RULES)}. Received: rule={rule!r}")

    @ops.custom_gradient
    def unit(x: Any) -> Any:
        y = ops.relu(x) if upper is None else ops.minimum(ops.relu(x), upper)

        def grad(*args: Any, upstream: Any = None) -> Any:
            if upstream is None:
                (upstream,) = args
            gate = ops.cast(ops.greater(x, 0.0), upstream.dtype)
            if upper is not None and rule == "unsaturated":
                gate = gate * ops.cast(ops.less(x, upper), upstream.dtype)
            return ops.relu(upstream) * gate

        return y, grad

    return unit


def _rectifier_cap(layer: Any) -> tuple[bool, float | None]:
    """``(is a plain rectifier, its cap)`` for ReLU / ReLU6 layers and activations."""
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        cap = config.get("max_value")
        plain = not config.get("negative_slope") and not config.get("threshold")
        return plain and (cap is None or float(cap) > 0), None if cap is None else float(cap)
    if isinstance(layer, keras.layers.Activation):
        name = str(layer.get_config().get("activation"))
        if name in ("relu", "relu6"):
            return True, 6.0 if name == "relu6" else None
    return False, None


def _built_in_activation(layer: Any) -> str | None:
    """The ``activation`` of a Conv/Dense-like layer, if it is one we split off."""
    if isinstance(layer, keras.layers.Activation) or not hasattr(layer, "activation"):
        return None
    name = layer.get_config().get("activation")
    return name if name in ("relu", "relu6", "softmax") else None


def _linear_twin(layer: Any) -> Any:
    """A copy of ``layer`` without its built-in activation (same weights)."""
    config = layer.get_config()
    config["activation"] = "linear"
    config["name"] = f"{layer.name}_linear"
    twin = layer.__class__.from_config(config)
    twin.build(layer.input.shape)
    twin.set_weights(layer.get_weights())
    return twin


def _is_softmax(layer: Any) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return isinstance(layer, keras.layers.Activation) and str(layer.get_config().get("activation")) == "softmax"


def _replacement(layer: Any, guided: bool, rule: str) -> Callable[..., Any] | None:
    """What runs instead of ``layer``, or ``None`` to run it as it is."""
    if _is_softmax(layer):
        return lambda x, *args, **kwargs: x
    if guided:
        is_rectifier, cap = _rectifier_cap(layer)
        if is_rectifier:
            unit = guided_relu(cap, rule)
            return lambda x, *args, **kwargs: unit(x)
    activation = _built_in_activation(layer)
    if activation == "softmax" or (guided and activation in ("relu", "relu6")):
        twin = _linear_twin(layer)
        if activation == "softmax":
            return twin
        unit = guided_relu(6.0 if activation == "relu6" else None, rule)
        return lambda x, *args, **kwargs: unit(twin(x, *args, **kwargs))
    return None


def spatial_layers(network: Any) -> list[str]:
    """Names of the layers with a spatial (``B x h x w x C``) output, in graph order, pooling excluded."""
    names = []
    for layer in network.layers:
        if any(kind in type(layer).__name__ for kind in _SKIPPED_KINDS):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4:
            names.append(layer.name)
    return names


def default_cam_layer(network: Any) -> str:
    """The last convolutional block: the last layer with a spatial output before the pooling head.

    Raises:
        ValueError: The network has no spatial layer.
    """
    names = spatial_layers(network)
    if not names:
        raise ValueError(f"Network {network.name!r} has no layer with a spatial (H x W x C) output for a CAM.")
    return names[-1]


def forget(network: Any) -> None:
    """Drop the cached prepared clone and compiled steps of ``network`` (a throw-away clone)."""
    with _LOCK:
        _PREPARED.pop(id(network), None)
        for key in [key for key, entry in _STEPS.items() if entry[0] is network]:
            del _STEPS[key]


def prepared_network(network: Any) -> Any:
    """The network the steps of ``network`` run: its batch-norm-folded clone (or itself when nothing folds)."""
    return _prepared(network)


def _prepared(network: Any) -> Any:
    """The batch-norm-folded clone of ``network`` (cached; the original is never changed)."""
    with _LOCK:
        entry = _PREPARED.get(id(network))
    if entry is not None and entry[0] is network:
        return entry[1]
    clone, changed = prepare_network(network, relu6="keep", fold_batchnorm=True)
    with _LOCK:
        _PREPARED[id(network)] = (network, clone if changed else network)
        return _PREPARED[id(network)][1]


class _Walker:
    """Runs a functional network layer by layer with replacements and recordings."""

    def __init__(self, network: Any, guided: bool, rule: str) -> None:
        self.network = network
        self.replacements: dict[int, Callable[..., Any] | None] = {}
        self.guided = guided
        self.rule = rule

    def _replacement_for(self, layer: Any) -> Callable[..., Any] | None:
        key = id(layer)
        if key not in self.replacements:
            self.replacements[key] = _replacement(layer, self.guided, self.rule)
        return self.replacements[key]

    def prepare(self, model: Any) -> None:
        """Build every replacement (linear twins copy weights) before any tracing starts."""
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                self.prepare(layer)
            else:
                self._replacement_for(layer)

    def run(self, model: Any, inputs: Any, record: dict[str, Any], watch: dict[str, str], delta: Any) -> Any:
        """Run ``model`` on ``inputs``; outputs of the layers named in ``watch`` go to ``record``."""

        def operation_fn(operation: Any) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                if isinstance(operation, keras.Model) and hasattr(operation, "_run_through_graph"):
                    out = self.run(operation, args[0], record, watch, delta)
                else:
                    replacement = self._replacement_for(operation) if isinstance(operation, keras.layers.Layer) else None
                    out = (replacement or operation)(*args, **kwargs)
                role = watch.get(getattr(operation, "name", ""))
                if role == "cam" and delta is not None:
                    out = out + delta
                if role is not None:
                    record[role] = out
                if role == "cam" and watch.get("_target_is_cam"):
                    record["target"] = out
                return out

            return call

        if hasattr(model, "_run_through_graph"):
            outputs = model._run_through_graph([inputs], operation_fn=operation_fn)
            return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs
        value = inputs
        for layer in model.layers:  # Sequential models
            value = operation_fn(layer)(value)
        return value


def saliency_step(
    model: Any,
    *,
    guided: bool,
    target: Target,
    cam_layer: str | None,
    rule: str = "active",
    freeze: bool = True,
) -> StepFn:
    """The compiled ``step(images, selector, spot)`` for a zoo model, cached per configuration.

    The score of a batch of RGB [0, 1] images is ``logits . selector`` for a
    class target, ``mean_hw(layer)[c] . selector`` for a channel, and
    ``layer[:, y, x, :] . selector`` with ``(y, x) = spot`` for a neuron; for a
    fully connected layer (``B x units``) it is ``layer . selector`` (both kinds).

    Args:
        model: A zoo model handle (``keras_model``, ``preprocess``, ``resolve_layer``).
        guided: Use guided rectifiers in the backward pass.
        target: What to explain.
        cam_layer: Raw name of the layer whose activation and gradient are
            returned too, or ``None``.
        rule: Guided ReLU6 rule (:data:`GUIDED_RELU6_RULES`).
        freeze: Fold the weights into the compiled step (TensorFlow); ``False``
            keeps reading the prepared network's variables.

    Returns:
        See :data:`neurofilters.filters.saliency._autodiff.StepFn`.
    """
    network = model.keras_model
    key = (id(network), bool(guided), target, cam_layer, rule if guided else None, bool(freeze))
    with _LOCK:
        entry = _STEPS.get(key)
    if entry is not None and entry[0] is network:
        return entry[1]
    prepared = _prepared(network)
    walker = _Walker(prepared, guided, rule)
    head = getattr(model, "_classifier_head", None)
    walker.prepare(prepared)
    if head is not None:
        walker.prepare(head)
    # The backbone's output is brought to the grid the head was built for (VGG: 7 x 7); the engine feeds such
    # models at the head's input size, so this is the identity there.
    head_grid = tuple(int(side) for side in head.inputs[0].shape[1:3]) if head is not None else None
    head_layers = tuple(getattr(model, "head_layers", ()))
    watch: dict[str, str] = {}
    if cam_layer is not None:
        watch[cam_layer] = "cam"
    if target.layer is not None:
        if target.layer == cam_layer:
            watch["_target_is_cam"] = "1"
        else:
            watch[target.layer] = "target"

    def forward(images: Any, selector: Any, spot: Any, delta: Any) -> tuple[Any, Any]:
        record: dict[str, Any] = {}
        outputs = walker.run(prepared, model.preprocess(images), record, watch, delta)
        in_head = head is not None and target.layer in head_layers  # VGG's fc1/fc2 live in the separate head
        if target.kind == "class" or in_head:
            logits = outputs
            if head is not None:
                resized = ops.image.resize(outputs, head_grid, interpolation="bilinear")
                logits = walker.run(head, resized, record, watch if in_head else {}, None)
        if target.kind == "class":
            scores = ops.sum(ops.cast(logits, "float32") * selector[None, :], axis=-1)
        else:
            values = ops.cast(record["target"], "float32")
            if len(values.shape) == 2:
                pass  # a fully connected layer (B x units): each unit is one value per image
            elif target.kind == "channel":
                values = ops.mean(values, axis=(1, 2))
            else:
                values = ops.take(ops.take(values, spot[0], axis=1), spot[1], axis=1)
            scores = ops.sum(values * selector[None, :], axis=-1)
        return scores, record.get("cam")

    step = compile_step(forward, with_activation=cam_layer is not None, freeze=freeze)
    with _LOCK:
        if len(_STEPS) > 32:
            _STEPS.clear()
        _STEPS[key] = (network, step)
    return step
