"""Autodiff per backend (input gradients, losses with per-call arrays, attribution score steps): the shared room.

Everything else in ``filters`` is written with ``keras.ops`` and numpy; only
"differentiate this with respect to the pixels" needs each backend's own
machinery (``tf.GradientTape`` inside a ``tf.function``, ``jax.grad`` under
``jax.jit``, ``torch.autograd.grad``). The implementation is picked from
``keras.backend.backend()``.

Only the input gradient is computed: the weights are constants, so no
backend spends time on their gradients (measured on a 2-core CPU: that is what
makes eager TensorFlow 3x slower).

Example::

    model = context.load_model("lite0")
    features = model.feature_model(["block10_expand_act"])

    def loss_fn(outputs):             # keras.ops on backend tensors
        return keras.ops.mean(outputs[0], axis=(1, 2, 3))   # one loss per sample

    gradient = make_gradient_fn(features, loss_fn)
    losses, grads = gradient(batch)   # numpy (B,), numpy (B, H, W, 3)
    losses, grads = gradient(batch, shift=(5, -7))  # network sees the batch rolled

:func:`gradient_feature_model` gives the same feature model on a clone of the
network prepared for this work (batch norms folded into convolutions, ReLU6
units optionally unbounded or passing gradients when saturated;
:func:`prepare_network` makes such a clone of any functional network).

Beside the input gradient of a loss of the outputs, this room holds the two
other autodiff engines the filters share:

* :func:`compile_network` (:class:`CompiledNetwork`): a forward pass and input
  gradients whose loss also reads arrays passed on each call (texture's Gram
  targets and masks), so one trace serves every step;
* :func:`compile_score_step`: a score's gradient with respect to the image *and*
  one layer's activation (the attribution room's CAM methods).

The modules behind it (``_network``, ``_tensorflow``, ``_jax``, ``_torch``,
``_compiled``, ``_scores``) are private to this room: other packages import
the names below. Importing this package loads neither Keras nor NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._compiled import CompiledNetwork

__all__ = [
    "PRECISIONS",
    "RELU6_MODES",
    "CompiledNetwork",
    "ExtrasLoss",
    "GradientFn", "LossFn",
    "ScoreForward", "ScoreStepFn",
    "compile_network",
    "has_relu6",
    "compile_score_step",
    "gradient_feature_model",
    "make_gradient_fn",
    "prepare_network",
    "resolve_precision",
    "supported_backends",
    "trace_frozen",
]

#: ``loss_fn(outputs) -> per-sample loss`` of shape ``(B,)``, written with
#: ``keras.ops``; ``outputs`` is the list of the feature model's outputs.
LossFn = Callable[[Sequence[Any]], Any]

#: ``fn(batch, shift=(0, 0)) -> (losses, gradients)``: numpy float32
#: ``(B, H, W, 3)`` in, writable numpy ``(B,)`` and ``(B, H, W, 3)`` out. The network sees
#: the batch rolled by ``shift = (dy, dx)`` (``np.roll`` over the two image
#: axes); the gradient is returned in the un-rolled frame.
GradientFn = Callable[..., tuple[Any, Any]]

#: ``loss_fn(outputs, extras) -> scalar`` (or ``(scalar, aux)``) written with ``keras.ops``:
#: the loss of a :class:`CompiledNetwork`, reading per-call arrays ``extras``.
ExtrasLoss = Callable[[Sequence[Any], Sequence[Any]], Any]

#: ``forward(images, selector, spot, delta) -> (scores (B,), activation or None)``,
#: written with ``keras.ops``; ``delta`` (JAX only, else ``None``) is added to the
#: recorded activation before the rest of the network sees it.
ScoreForward = Callable[[Any, Any, Any, Any], tuple[Any, Any]]

#: ``step(images, selector, spot) -> (scores, d scores / d images, activation, d scores / d activation)``
#: as numpy arrays (the last two ``None`` without a CAM layer).
ScoreStepFn = Callable[[Any, Any, tuple[int, int]], tuple[Any, Any, Any, Any]]

#: How ReLU6 units are treated by :func:`gradient_feature_model`.
RELU6_MODES = ("unbounded", "pass-gradient", "keep")

#: Compute precision of the prepared network (``"auto"``: see :func:`resolve_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")

_BACKENDS = ("tensorflow", "jax", "torch")


def gradient_feature_model(
    model: Any, layer_names: Sequence[str], *, relu6: str = "keep", precision: str = "float32", max_pixels: int | None = None
) -> Any:
    """Feature model on a clone of ``model``'s network prepared for input gradients.

    Built by the private ``_network`` module (imports Keras).

    Args:
        model: A zoo model handle.
        layer_names: Raw layer names or aliases.
        relu6: ``"unbounded"`` (ReLU6 units become ReLUs), ``"pass-gradient"``
            (forward unchanged, gradient passes saturated units) or ``"keep"``.
        precision: ``"float32"``, ``"bfloat16"`` (about 2x faster for VGG16 on CPUs
            with AVX512_BF16 / AMX) or ``"auto"`` (see :func:`resolve_precision`).
        max_pixels: The largest image (pixels) it will be called on, when the caller bounds it: on an x86 CPU
            without AVX-512, only the convolutions that would pass oneDNN's scratch cap there are banded
            (``neurofilters.filters.zoo.banded``); ``None``: every large one, each call choosing by its size;
            ``0``: none (for steps that hold the weights as constants: oneDNN's direct convolution has no such cap).

    Returns:
        A Keras model from RGB [0, 1] ``(B, H, W, 3)`` to a list of float32 layer outputs.
    """
    from ._network import gradient_feature_model as build

    return build(model, layer_names, relu6=relu6, precision=precision, max_pixels=max_pixels)


def resolve_precision(precision: str, model: Any) -> str:
    """``"float32"`` or ``"bfloat16"``: what ``precision`` means for ``model`` on this machine.

    Decided by the private ``_network`` module (imports Keras).

    Args:
        precision: One of :data:`PRECISIONS`.
        model: A zoo model handle (its ``keras_model`` is inspected) or a ``keras.Model``.
    """
    from ._network import resolve_precision as resolve

    return resolve(precision, getattr(model, "keras_model", model))


def supported_backends() -> tuple[str, ...]:
    """The Keras backends this module has an implementation for."""
    return _BACKENDS


def make_gradient_fn(feature_model: Any, loss_fn: LossFn, *, jit_compile: bool = False) -> GradientFn:
    """Build a compiled function returning per-sample losses and input gradients.

    The gradient of the *sum* of the per-sample losses is taken, which for a
    batch of independent samples (inference mode, no batch statistics) is
    each sample's own gradient: tiles of one image can share a call.

    Args:
        feature_model: A ``keras.Model`` taking float32 ``(B, H, W, 3)``
            (RGB in [0, 1]; the model does its own preprocessing) and
            returning one tensor or a list of tensors.
        loss_fn: Maps the list of outputs to a ``(B,)`` tensor of losses,
            using ``keras.ops`` only.
        jit_compile: TensorFlow only: compile the step with XLA (faster for
            plain convolution stacks such as VGG, slower for depthwise
            convolutions on CPU). JAX always compiles; torch ignores it.

    Returns:
        ``fn(batch, shift=(0, 0)) -> (losses, gradients)`` on numpy arrays
        (see :data:`GradientFn`). On TensorFlow the step is traced once for
        any input size and its weights are frozen into the graph (with
        ``jit_compile`` it is compiled once per input size instead).

    Raises:
        RuntimeError: The active Keras backend has no implementation here.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        from ._tensorflow import make_gradient_fn as make
    elif backend == "jax":
        from ._jax import make_gradient_fn as make
    elif backend == "torch":
        from ._torch import make_gradient_fn as make
    else:
        raise RuntimeError(
            f"Input gradients are implemented for the Keras backends {', '.join(_BACKENDS)}. "
            f"Received: KERAS_BACKEND={backend!r}; set KERAS_BACKEND to one of those."
        )
    return make(feature_model, loss_fn, jit_compile=jit_compile)


def has_relu6(network: Any) -> bool:
    """Whether any layer of the Keras ``network`` is a ReLU6 unit, the only units the ``relu6`` setting changes (imports Keras)."""
    from ._network import has_relu6 as find

    return find(network)


def prepare_network(
    network: Any, *, relu6: str = "keep", fold_batchnorm: bool = True, precision: str = "float32", max_pixels: int | None = None
) -> tuple[Any, bool]:
    """``(clone, changed)``: ``network`` with batch norms folded, ReLU6 units rewritten and, where oneDNN needs it, its
    large convolutions banded for inputs up to ``max_pixels`` (see ``_network``; imports Keras)."""
    from ._network import prepare_network as prepare

    return prepare(network, relu6=relu6, fold_batchnorm=fold_batchnorm, precision=precision, max_pixels=max_pixels)


def trace_frozen(step: Callable[..., Any], signature: Sequence[Any], variables: Sequence[Any]) -> Any:
    """TensorFlow: trace ``step`` once for ``signature`` with ``variables`` frozen as constants (imports TensorFlow)."""
    from ._tensorflow import trace_frozen as trace

    return trace(step, signature, variables)


def compile_network(feature_model: Any, *, jit_compile: bool = False) -> CompiledNetwork:
    """A :class:`CompiledNetwork` of ``feature_model`` for the active backend (TensorFlow or JAX; see ``_compiled``)."""
    from ._compiled import compile_network as compile_

    return compile_(feature_model, jit_compile=jit_compile)


def compile_score_step(
    forward: ScoreForward, *, with_activation: bool, freeze: bool = True, variables: Sequence[Any] = ()
) -> ScoreStepFn:
    """``forward`` compiled with its derivatives (image, and the recorded activation) for the active backend."""
    from ._scores import compile_score_step as compile_

    return compile_(forward, with_activation=with_activation, freeze=freeze, variables=variables)


def __getattr__(name: str) -> Any:
    """:class:`CompiledNetwork`, loaded (with NumPy) when first asked for."""
    if name == "CompiledNetwork":
        from ._compiled import CompiledNetwork

        return CompiledNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
