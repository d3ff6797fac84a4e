"""The network a saliency method differentiates: the zoo model walked layer by layer, ReLUs optionally guided.

Nothing of the user's model is changed. The network is a clone with batch norms
folded into their convolutions (:func:`neurofilters.filters.gradients.prepare_network`);
its functional graph is then *rebuilt* with ``keras.models.clone_model``
(the same layers and weights, a ``call_function`` deciding what each call
runs), which lets this module

* return one layer's activation (the CAM layer) and another's output (a
  channel or neuron target) beside the network's output (``keras.Model``
  outputs taken from inside the graph),
* replace rectifiers by guided ones (layers with a built-in ``relu``
  activation run as a linear twin followed by the guided unit), and
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

from ..gradients import ScoreStepFn, compile_score_step, prepare_network

__all__ = ["GUIDED_RELU6_RULES", "Target", "default_cam_layer", "forget", "prepared_network", "guided_relu", "saliency_step", "spatial_layers"]

#: How a guided backward pass treats a saturated ReLU6 unit.
GUIDED_RELU6_RULES = ("active", "unsaturated")

_LOCK = threading.Lock()
_STEPS: dict[tuple[Any, ...], tuple[Any, ScoreStepFn]] = {}
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


class _GuidedUnit(keras.layers.Layer):
    """A rectifier with a guided backward pass (:func:`guided_relu`) as a layer of the rebuilt graph."""

    def __init__(self, upper: float | None, rule: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit = guided_relu(upper, rule)

    def call(self, inputs: Any) -> Any:
        """Rectify ``inputs``."""
        return self.unit(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Element-wise: the input's shape."""
        return input_shape


class _Nudge(keras.layers.Layer):
    """Adds the CAM layer's ``delta`` while a JAX step is traced (see :func:`neurofilters.filters.gradients.compile_score_step`); passes through otherwise."""

    def __init__(self, slot: threading.local, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slot = slot

    def call(self, inputs: Any) -> Any:
        """``inputs + delta`` when this thread's forward pass set a delta, else ``inputs`` itself."""
        delta = getattr(self.slot, "delta", None)
        return inputs if delta is None else inputs + delta

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Element-wise: the input's shape."""
        return input_shape


def _replacement(layer: Any, guided: bool, rule: str) -> Callable[..., Any] | None:
    """What runs instead of ``layer`` in the rebuilt graph (layers built now), or ``None`` to run it as it is."""
    if _is_softmax(layer):
        return lambda x, *args, **kwargs: x
    dtype = layer.dtype_policy
    if guided:
        is_rectifier, cap = _rectifier_cap(layer)
        if is_rectifier:
            unit = _GuidedUnit(cap, rule, name=f"{layer.name}_guided", dtype=dtype)
            return lambda x, *args, **kwargs: unit(x)
    activation = _built_in_activation(layer)
    if activation == "softmax" or (guided and activation in ("relu", "relu6")):
        twin = _linear_twin(layer)
        if activation == "softmax":
            return twin
        unit = _GuidedUnit(6.0 if activation == "relu6" else None, rule, name=f"{layer.name}_guided", dtype=dtype)
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
    # max_pixels=0: no convolution is banded (filters/zoo/banded.py): the score steps hold the weights as constants,
    # and oneDNN's direct convolution then has no scratch cap to cross.
    clone, changed = prepare_network(network, relu6="keep", fold_batchnorm=True, max_pixels=0)
    with _LOCK:
        _PREPARED[id(network)] = (network, clone if changed else network)
        return _PREPARED[id(network)][1]


def _rebuilt(model: Any, guided: bool, rule: str, watch: dict[str, str], slot: threading.local) -> Any:
    """``model``'s graph with replacements, as a ``keras.Model`` returning ``{"output", "cam"?, "target"?}``.

    The layers (and weights) are ``model``'s own, called again on new inputs
    (``keras.models.clone_model`` with ``clone_function`` keeping each layer);
    ``call_function`` runs the replacement of each layer and keeps the output
    of the layers named in ``watch`` (name -> ``"cam"`` or ``"target"``).

    Args:
        model: A functional or ``Sequential`` ``keras.Model`` (the prepared network or the classifier head).
        guided: Replace rectifiers by guided ones.
        rule: Guided ReLU6 rule (:data:`GUIDED_RELU6_RULES`).
        watch: Raw layer name -> the key its output gets in the result.
        slot: Where the JAX step puts the CAM layer's ``delta`` while it traces (:class:`_Nudge`).

    Returns:
        A ``keras.Model`` from ``model``'s inputs to a dict of tensors.
    """
    replacements: dict[int, Callable[..., Any] | None] = {}
    recorded: dict[str, Any] = {}

    def call(layer: Any, *args: Any, outer: bool = True, **kwargs: Any) -> Any:
        if isinstance(layer, keras.Sequential):  # clone_model takes no call_function for these: chain the calls here
            out = args[0]
            for inner in layer.layers:
                out = call(inner, out, outer=outer)
        elif isinstance(layer, keras.Model):
            out = _nested(layer, lambda inner, *a, **k: call(inner, *a, outer=False, **k))(*args, **kwargs)
        else:
            if id(layer) not in replacements:
                replacements[id(layer)] = _replacement(layer, guided, rule)
            out = (replacements[id(layer)] or layer)(*args, **kwargs)
        role = watch.get(layer.name)
        if role is not None and not outer:
            raise ValueError(
                f"Layer {layer.name!r} is inside a nested functional model; saliency records top-level layers only. "
                "Choose a layer of the network itself."
            )
        if role == "cam":
            out = _Nudge(slot, name=f"{layer.name}_nudge", dtype=layer.dtype_policy)(out)
        if role is not None:
            recorded[role] = out
        return out

    if isinstance(model, keras.Sequential):
        first = model.inputs[0]
        inputs = keras.Input(batch_shape=tuple(first.shape), dtype=first.dtype)
        graph = keras.Model(inputs, call(model, inputs))
    else:
        graph = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    outputs = graph.outputs[0] if len(graph.outputs) == 1 else graph.outputs
    return keras.Model(graph.inputs, {"output": outputs, **recorded}, name=f"{model.name}_saliency")


def _nested(model: Any, call: Callable[..., Any]) -> Any:
    """A functional model nested in the graph, rebuilt on its own inputs with ``call`` (a subclassed one: itself)."""
    try:
        functional = "input_layers" in model.get_config()
    except NotImplementedError:  # subclassed without a config
        functional = False
    if not functional:  # its insides are unknown: it runs as it is
        return model
    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


def saliency_step(
    model: Any,
    *,
    guided: bool,
    target: Target,
    cam_layer: str | None,
    rule: str = "active",
    freeze: bool = True,
) -> ScoreStepFn:
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
        See :data:`neurofilters.filters.gradients.ScoreStepFn`.
    """
    network = model.keras_model
    key = (id(network), bool(guided), target, cam_layer, rule if guided else None, bool(freeze))
    with _LOCK:
        entry = _STEPS.get(key)
    if entry is not None and entry[0] is network:
        return entry[1]
    prepared = _prepared(network)
    head = getattr(model, "_classifier_head", None)
    # The backbone's output is brought to the grid the head was built for (VGG: 7 x 7); the engine feeds such
    # models at the head's input size, so this is the identity there.
    head_grid = tuple(int(side) for side in head.inputs[0].shape[1:3]) if head is not None else None
    in_head = head is not None and target.layer in tuple(getattr(model, "head_layers", ()))  # VGG's fc1/fc2
    watch: dict[str, str] = {}
    if target.layer is not None and not in_head:
        watch[target.layer] = "target"
    if cam_layer is not None:
        watch[cam_layer] = "cam"  # also the target's layer when both are one
    slot = threading.local()
    graph = _rebuilt(prepared, guided, rule, watch, slot)
    head_watch = {target.layer: "target"} if in_head else {}
    head_graph = _rebuilt(head, guided, rule, head_watch, slot) if head is not None else None

    def forward(images: Any, selector: Any, spot: Any, delta: Any) -> tuple[Any, Any]:
        slot.delta = delta
        try:
            record = dict(graph(model.preprocess(images)))
        finally:
            slot.delta = None
        if target.kind == "class" or in_head:
            logits = record["output"]
            if head_graph is not None:
                resized = ops.image.resize(logits, head_grid, interpolation="bilinear")
                head_record = head_graph(resized)
                logits = head_record["output"]
                if in_head:
                    record["target"] = head_record["target"]
        if target.kind == "class":
            scores = ops.sum(ops.cast(logits, "float32") * selector[None, :], axis=-1)
        else:
            values = ops.cast(record["cam" if target.layer == cam_layer else "target"], "float32")
            if len(values.shape) == 2:
                pass  # a fully connected layer (B x units): each unit is one value per image
            elif target.kind == "channel":
                values = ops.mean(values, axis=(1, 2))
            else:
                values = ops.take(ops.take(values, spot[0], axis=1), spot[1], axis=1)
            scores = ops.sum(values * selector[None, :], axis=-1)
        return scores, record.get("cam")

    variables = list(graph.variables) + (list(head_graph.variables) if head_graph is not None else [])
    step = compile_score_step(forward, with_activation=cam_layer is not None, freeze=freeze, variables=variables)
    with _LOCK:
        if len(_STEPS) > 32:
            _STEPS.clear()
        _STEPS[key] = (network, step)
    return step
