"""Networks prepared for input-gradient work: batch norms folded, ReLU6 units optionally unbounded.

Written with Keras layers and ``keras.ops`` only, so every backend gets the same
network. Three rewrites of a functional model, all made on a clone (the zoo's
model is never changed):

* **Batch-norm folding.** An inference-mode ``BatchNormalization`` right after a
  convolution is an affine map per channel; folding it into the convolution's
  kernel and bias removes one full-size multiply-add from the forward pass and
  one multiply from the backward pass (about 10-15 % of a Lite0 step on CPU).
  Outputs agree with the original to float32 rounding.
* **ReLU6.** ReLU6 units saturate at 6: their gradient is zero there, and an
  objective on them is bounded. ``relu6="pass-gradient"`` keeps the forward pass
  and lets the gradient through saturated units (guided by what the unit *would*
  do); ``relu6="unbounded"`` dreams through a copy whose ReLU6 units are plain
  ReLUs, so activations and objectives can keep rising. ``"keep"`` leaves them.
* **Banded convolutions.** Where oneDNN would run a large convolution with its
  reference kernel (TensorFlow on an x86 CPU without AVX-512), those convolutions
  become :class:`~neurofilters.filters.zoo.banded.BandedConv2D` (the same sums).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from ..zoo.banded import banded_layer, banded_layer_names, copy_layer, cpu_flags
from . import PRECISIONS, RELU6_MODES

__all__ = [
    "PRECISIONS",
    "RELU6_MODES",
    "ReLU6PassGradient",
    "cpu_has_native_bfloat16",
    "has_relu6",
    "gradient_feature_model",
    "prepare_network",
    "resolve_precision",
]

#: CPU flags (``/proc/cpuinfo``) of native bfloat16 dot products.
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

_LOCK = threading.Lock()
_NETWORKS: dict[tuple[int, str, str], tuple[Any, Any]] = {}
_FEATURES: dict[tuple[int, str, str, tuple[str, ...]], Any] = {}


class ReLU6PassGradient(keras.layers.Layer):
    """``min(max(x, 0), 6)`` forward, the gradient of ``max(x, 0)`` backward."""

    def call(self, inputs: Any) -> Any:
        """Apply the unit."""
        rectified = ops.relu(inputs)
        return rectified - ops.stop_gradient(rectified - ops.minimum(rectified, 6.0))


class _AsFloat32(keras.layers.Layer):
    """Casts its input to float32 (feature outputs of a bfloat16 network, for the loss)."""

    def call(self, inputs: Any) -> Any:
        """Return ``inputs`` as float32."""
        return ops.cast(inputs, "float32")


class _FoldedAway(keras.layers.Layer):
    """Stands where a folded batch norm was: passes its input through."""

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        """Return ``inputs`` unchanged."""
        del training, mask
        return inputs


def has_relu6(network: Any) -> bool:
    """Whether any layer of ``network`` is a ReLU6 unit, the only units the ``relu6`` setting changes."""
    return any(_is_relu6(layer) for layer in network.layers)


def _is_relu6(layer: Any) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return (
            config.get("max_value") is not None
            and float(config["max_value"]) == 6.0
            and not config.get("negative_slope")
            and not config.get("threshold")
        )
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") == "relu6"
    return False


def _producer(calls: dict[str, list[tuple[str, ...]]], name: str) -> str | None:
    """The single layer feeding layer ``name`` in its (only) call, or ``None``."""
    if len(calls.get(name, ())) != 1:
        return None
    parents = set(calls[name][0])
    return parents.pop() if len(parents) == 1 else None


def _consumers(calls: dict[str, list[tuple[str, ...]]], name: str) -> int:
    """How many layer calls take an output of layer ``name``."""
    return sum(1 for each in calls.values() for call in each if name in call)


def _batchnorm_folds(network: Any, calls: dict[str, list[tuple[str, ...]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Convolution name -> ``(scale, shift)`` of the batch norm that follows it alone."""
    folds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in network.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3):
            continue
        producer = _producer(calls, layer.name)
        conv = network.get_layer(producer) if producer is not None else None
        if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            continue
        if _consumers(calls, conv.name) != 1 or len(calls.get(conv.name, ())) != 1:
            continue
        if conv.get_config().get("activation") not in (None, "linear"):
            continue
        if isinstance(conv, keras.layers.DepthwiseConv2D) and conv.get_config().get("depth_multiplier", 1) != 1:
            continue
        values = {variable.name: np.asarray(variable.numpy(), np.float64) for variable in layer.weights}
        variance = values["moving_variance"]
        gamma = values.get("gamma", np.ones_like(variance))
        beta = values.get("beta", np.zeros_like(variance))
        scale = gamma / np.sqrt(variance + layer.epsilon)
        folds[conv.name] = (scale, beta - values["moving_mean"] * scale)
    return folds


def _layer_graph(network: Any) -> dict[str, list[tuple[str, ...]]]:
    """:func:`~neurofilters.filters.zoo.graph.layer_calls` of ``network``, empty where it has no functional config."""
    from ..zoo.graph import layer_calls

    try:
        return layer_calls(network)
    except ValueError:  # subclassed: nothing is folded (it cannot be cloned either)
        return {}


def _config(layer: Any, dtype: str | None) -> dict[str, Any]:
    config = layer.get_config()
    if dtype is not None and "dtype" in config and not isinstance(layer, keras.layers.InputLayer):
        config["dtype"] = dtype
    return config


def _folded_conv(layer: Any, scale: np.ndarray, shift: np.ndarray, dtype: str | None = None, banded: bool = False) -> Any:
    config = _config(layer, dtype)
    config["use_bias"] = True
    if banded:
        new = banded_layer(layer, config)
    else:
        new = layer.__class__.from_config(config)
        new.build(layer.input.shape)
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    kernel = weights[0]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(1, 1, -1, 1)
    else:
        kernel = kernel * scale
    bias = shift + (weights[1] * scale if len(weights) > 1 else 0.0)
    new.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return new


def cpu_has_native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has native bfloat16 dot products (AVX512_BF16 or AMX).

    Args:
        cpuinfo: Text of ``/proc/cpuinfo`` (read when ``None``; ``False`` where it does not exist).
    """
    flags = cpu_flags(cpuinfo)
    return flags is not None and any(flag in flags for flag in _BF16_CPU_FLAGS)


#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below which bfloat16 dot products are not native.
_ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache
def _native_bfloat16_here() -> bool:
    """:func:`cpu_has_native_bfloat16` of this machine, read once per process; an ``ONEDNN_MAX_CPU_ISA`` cap
    below AVX512_CORE_BF16 (how an AVX2-only CPU is emulated) counts as no native bfloat16."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISA_WITHOUT_BF16:
        return False
    return cpu_has_native_bfloat16()


def _uses_depthwise(network: Any) -> bool:
    return any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in getattr(network, "layers", ()))


def resolve_precision(precision: str, network: Any, *, native_bfloat16: bool | None = None) -> str:
    """Resolve ``"auto"`` to the faster precision for ``network`` here; pass the others through.

    ``"auto"`` is ``"bfloat16"`` when the Keras backend is TensorFlow, no GPU is
    visible, the CPU has native bfloat16 dot products and the network has no
    depthwise convolutions (their bfloat16 kernels are slower than float32 on
    CPU); otherwise ``"float32"``.

    Args:
        precision: One of :data:`PRECISIONS`.
        network: The ``keras.Model`` that will be prepared.
        native_bfloat16: Override the CPU check (:func:`cpu_has_native_bfloat16`).

    Returns:
        ``"float32"`` or ``"bfloat16"``.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    if keras.backend.backend() != "tensorflow" or _uses_depthwise(network):
        return "float32"
    if native_bfloat16 is None:
        native_bfloat16 = _native_bfloat16_here()
    if not native_bfloat16:
        return "float32"
    import tensorflow as tf

    return "float32" if tf.config.list_logical_devices("GPU") else "bfloat16"


def prepare_network(
    network: Any, *, relu6: str = "keep", fold_batchnorm: bool = True, precision: str = "float32", max_pixels: int | None = None
) -> tuple[Any, bool]:
    """Clone a functional network with batch norms folded, ReLU6 units rewritten, large convolutions banded, in ``precision``.

    Args:
        network: A functional ``keras.Model``.
        relu6: One of :data:`RELU6_MODES`.
        fold_batchnorm: Fold each batch norm that directly follows a convolution into it.
        precision: ``"float32"`` or ``"bfloat16"`` (compute and weights of every layer).
        max_pixels: The largest input (pixels of one image) the clone will see, when the caller bounds it: only
            the convolutions that would pass oneDNN's cap there are banded (``None``: every large one; ``0``: none).

    Returns:
        ``(network, changed)``: the clone (or ``network`` itself when nothing
        needed rewriting, or it cannot be cloned) and whether it differs.

    Raises:
        ValueError: ``relu6`` is not one of :data:`RELU6_MODES`, or ``precision``
            is not ``"float32"`` / ``"bfloat16"``.
    """
    if relu6 not in RELU6_MODES:
        raise ValueError(f"relu6 must be one of {', '.join(RELU6_MODES)}. Received: relu6={relu6!r}")
    if precision not in ("float32", "bfloat16"):
        raise ValueError(
            f"prepare_network needs a resolved precision, float32 or bfloat16 (resolve 'auto' with "
            f"resolve_precision). Received: precision={precision!r}"
        )
    dtype = "bfloat16" if precision == "bfloat16" else None
    calls = _layer_graph(network) if fold_batchnorm else {}
    folds = _batchnorm_folds(network, calls) if calls else {}
    folded_norms = {
        layer.name
        for layer in network.layers
        if isinstance(layer, keras.layers.BatchNormalization) and _producer(calls, layer.name) in folds
    }
    rewrite_relu6 = relu6 != "keep" and has_relu6(network)
    banded = banded_layer_names(network, max_pixels)
    if not folds and not rewrite_relu6 and dtype is None and not banded:
        return network, False

    def clone(layer: Any) -> Any:
        if layer.name in folded_norms:
            return _FoldedAway(name=layer.name, dtype=dtype)
        if layer.name in folds:
            return _folded_conv(layer, *folds[layer.name], dtype=dtype, banded=layer.name in banded)
        if rewrite_relu6 and _is_relu6(layer):
            if relu6 == "unbounded":
                return keras.layers.ReLU(name=layer.name, dtype=dtype)
            return ReLU6PassGradient(name=layer.name, dtype=dtype)
        if layer.name in banded:
            new = banded_layer(layer, _config(layer, dtype))
            new.set_weights(layer.get_weights())
            return new
        return copy_layer(layer, _config(layer, dtype))

    try:
        return keras.models.clone_model(network, clone_function=clone), True
    except Exception:  # subclassed or exotic models: dream on the original network
        return network, False


def gradient_feature_model(
    model: Any, layer_names: Sequence[str], *, relu6: str = "keep", precision: str = "float32", max_pixels: int | None = None
) -> Any:
    """A model from RGB [0, 1] images to the outputs of ``layer_names``, prepared for input gradients.

    Like :meth:`neurofilters.filters.zoo.ZooModel.feature_model` (same inputs and outputs,
    preprocessing inside), but on a clone of the network with batch norms folded
    and ReLU6 units treated as ``relu6`` says, computing in ``precision``
    (outputs are always float32). Clones are cached per network, mode and
    precision; feature models per layer tuple.

    Args:
        model: A zoo model handle (``keras_model``, ``preprocess``, ``resolve_layer``,
            ``feature_model``).
        layer_names: Raw layer names or aliases.
        relu6: One of :data:`RELU6_MODES`.
        precision: One of :data:`PRECISIONS` (``"auto"``: see :func:`resolve_precision`).
        max_pixels: The largest image (pixels) it will be called on, when the caller bounds it (see :func:`prepare_network`;
            ``0``: nothing is banded, for steps that hold the weights as constants).

    Returns:
        A Keras model returning a list with one float32 tensor per layer.
    """
    from ..zoo.feature_extractor import FeatureExtractor

    names = tuple(model.resolve_layer(name) for name in layer_names)
    network = getattr(model, "keras_model", None)
    if network is None or not isinstance(network, keras.Model) or not hasattr(network, "get_layer"):
        return model.feature_model(list(names))
    precision = resolve_precision(precision, network)
    key = (id(network), relu6, precision, banded_layer_names(network, max_pixels))
    with _LOCK:
        cached = _FEATURES.get((*key, names))
        if cached is not None:
            return cached
        entry = _NETWORKS.get(key)
    if entry is None or entry[0] is not network:
        prepared, changed = prepare_network(network, relu6=relu6, precision=precision, max_pixels=max_pixels)
        entry = (network, prepared if changed else None)
        with _LOCK:
            _NETWORKS[key] = entry
    prepared = entry[1]
    if prepared is None:
        features = model.feature_model(list(names), max_pixels=max_pixels)
    else:
        outputs = [_first(prepared.get_layer(name).output) for name in names]
        if precision != "float32":
            outputs = [_AsFloat32(name=f"{name}_float32", dtype="float32")(output) for name, output in zip(names, outputs)]
        inner = keras.Model(prepared.inputs, outputs)
        images = keras.Input(shape=(None, None, 3), name="rgb")
        graph = keras.Model(images, inner(model.preprocess(images)), name=f"{model.name}_gradient_graph")
        features = FeatureExtractor(graph, names, name=f"{model.name}_gradient_features")
    with _LOCK:
        return _FEATURES.setdefault((*key, names), features)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value
