"""Compiled forward passes and input gradients whose loss takes per-call arrays (TensorFlow, JAX).

:func:`neurofilters.filters.gradients.make_gradient_fn` differentiates a loss of
the outputs alone; the texture filters' Gram engine needs losses that also read arrays which
change every step (the Gram mismatch matrices, feature masks, content targets).
Those arrays are passed as arguments of the compiled step instead of being
frozen into it, so one trace serves every step, tile and octave. TensorFlow
(``tf.function`` with shape-free signatures) and JAX (``jax.jit`` of
``jax.value_and_grad`` over a stateless call) are supported; the loss itself is
written with ``keras.ops``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from . import ExtrasLoss

__all__ = ["CompiledNetwork", "compile_network"]


class CompiledNetwork:
    """A feature model's compiled forward pass and loss gradients.

    Attributes:
        forward: ``forward(image) -> [numpy (h, w, c) per layer]`` for one float32 ``(H, W, 3)`` image.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], list[np.ndarray]],
        make_windows_grad: Callable[[ExtrasLoss, int, int], Any],
        make_map: Callable[[ExtrasLoss, int], Any],
    ) -> None:
        """Hold the backend's compiled functions (built by :func:`compile_network`); one window's step is
        the several-window step with one window."""
        self.forward = forward
        self._make_windows_grad = make_windows_grad
        self._make_map = make_map
        self._grads: dict[Hashable, Any] = {}
        self._windows_grads: dict[Hashable, Any] = {}
        self._maps: dict[Hashable, Any] = {}
        self._count: Callable[[], int] = lambda: 0

    def forward_map(self, key: Hashable, map_fn: ExtrasLoss, image: np.ndarray, extras: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``map_fn(outputs, extras)`` (a list of tensors) of the forward pass, compiled once per ``key``
        (a key must identify ``map_fn``: engines sharing this network share its compiled functions).

        Statistics such as Gram matrices are computed inside the graph: numpy's BLAS threads,
        idle while the network runs, can take a tenth of a second to wake on a busy machine.
        """
        fn = self._maps.get(key)
        if fn is None:
            fn = self._maps[key] = self._make_map(map_fn, len(extras))
        return fn(np.asarray(image, np.float32), [np.asarray(extra, np.float32) for extra in extras])

    def value_and_grad(self, key: Hashable, loss_fn: ExtrasLoss, image: np.ndarray, extras: Sequence[np.ndarray]) -> tuple[float, np.ndarray]:
        """Loss and its gradient with respect to ``image``.

        Args:
            key: Identifies ``loss_fn`` (the step is compiled once per key and number of extras).
            loss_fn: The loss of the outputs and the extras.
            image: float32 ``(H, W, 3)``.
            extras: float32 arrays the loss reads.

        Returns:
            ``(loss, gradient)``, the gradient float32 ``(H, W, 3)``.
        """
        def with_aux(outputs: Sequence[Any], extras: Sequence[Any]) -> tuple[Any, Any]:
            value = loss_fn(outputs, extras)
            return value, value

        loss, gradient, _ = self.value_grad_aux(key, with_aux, image, extras)
        return loss, gradient

    def value_grad_aux(self, key: Hashable, loss_fn: ExtrasLoss, image: np.ndarray, extras: Sequence[np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
        """Like :meth:`value_and_grad` for a ``loss_fn`` returning ``(loss, aux)``: also gives ``aux`` (a tensor) as numpy."""
        fn = self._grads.get(key)
        if fn is None:

            def one_window(outputs: Sequence[Sequence[Any]], extras: Sequence[Any]) -> tuple[Any, Any]:
                return loss_fn(outputs[0], extras)

            fn = self._grads[key] = self._make_windows_grad(one_window, 1, len(extras))
        loss, gradients, aux = fn([np.asarray(image, np.float32)], [np.asarray(extra, np.float32) for extra in extras])
        return loss, gradients[0], aux

    def windows_value_grad_aux(
        self, key: Hashable, loss_fn: ExtrasLoss, windows: Sequence[np.ndarray], extras: Sequence[np.ndarray]
    ) -> tuple[float, list[np.ndarray], np.ndarray]:
        """Like :meth:`value_grad_aux` for a loss of several windows of one image, in one forward and backward pass.

        ``loss_fn(outputs, extras)`` gets one list of layer outputs per window. Every window's activations
        are held until the backward pass, so the memory is that of all windows together; in return no
        window is evaluated twice (a loss coupling the windows, such as a Gram matrix summed over them,
        otherwise needs a forward pass for the statistics and another for the gradients).

        Returns:
            ``(loss, gradients, aux)``: one float32 ``(h, w, 3)`` gradient per window.
        """
        full_key = (key, len(windows))
        fn = self._windows_grads.get(full_key)
        if fn is None:
            fn = self._windows_grads[full_key] = self._make_windows_grad(loss_fn, len(windows), len(extras))
        return fn([np.asarray(window, np.float32) for window in windows], [np.asarray(extra, np.float32) for extra in extras])

    @property
    def traces(self) -> int:
        """How many times the backend traced or compiled a step so far (XLA compiles once per input shape)."""
        return self._count()


def compile_network(feature_model: Any, *, jit_compile: bool = False) -> CompiledNetwork:
    """Compile ``feature_model`` (RGB [0, 1] ``(B, H, W, 3)`` -> list of layer outputs) for the active backend.

    Args:
        feature_model: The feature model.
        jit_compile: TensorFlow: compile the loss-and-gradient steps with XLA (once per input
            shape; faster for VGG on CPU). JAX always compiles.

    Raises:
        RuntimeError: The Keras backend is neither TensorFlow nor JAX.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(feature_model, jit_compile)
    if backend == "jax":
        return _jax(feature_model)
    raise RuntimeError(
        f"The texture filters support the Keras backends tensorflow and jax. Received: KERAS_BACKEND={backend!r}; "
        "set KERAS_BACKEND=tensorflow (the default) or jax."
    )


def _as_list(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _tensorflow(feature_model: Any, jit_compile: bool) -> CompiledNetwork:
    import keras
    import tensorflow as tf

    traces = [0]

    image_spec = tf.TensorSpec([None, None, 3], tf.float32)
    # The weights are traced as constants (their values now): with a constant filter oneDNN runs its direct
    # convolution (brg_conv_fwd) on AVX2 CPUs too, where a variable one gets im2col + GEMM, which needs a buffer
    # per call and declines layers needing over 1 GiB (filters/zoo/banded.py). Under the AVX2 cap one 544²
    # evaluation of the texture layers took 1.34 s instead of 1.75 s; natively 0.73 s instead of 0.76 s.
    weights = [(variable, variable.numpy()) for variable in {id(v): v for v in getattr(feature_model, "variables", ())}.values()]

    def features(images: tf.Tensor) -> list[tf.Tensor]:
        with keras.StatelessScope(state_mapping=weights):
            return _as_list(feature_model(images, training=False))

    @tf.function(input_signature=[image_spec], autograph=False)
    def forward_graph(image: tf.Tensor) -> list[tf.Tensor]:
        return [output[0] for output in features(image[None])]

    def forward(image: np.ndarray) -> list[np.ndarray]:
        return [output.numpy() for output in forward_graph(tf.convert_to_tensor(np.asarray(image, np.float32)))]

    def make_windows_grad(loss_fn: ExtrasLoss, n_windows: int, n_extras: int) -> Any:
        window_specs = [image_spec] * n_windows
        extra_specs = [tf.TensorSpec(None, tf.float32) for _ in range(n_extras)]

        @tf.function(input_signature=[window_specs, extra_specs], jit_compile=jit_compile, autograph=False)
        def step(windows: list[tf.Tensor], extras: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor], tf.Tensor]:
            traces[0] += 1  # runs once per trace (per shape under XLA), not per call
            with tf.GradientTape() as tape:
                for window in windows:
                    tape.watch(window)
                outputs = [[output[0] for output in features(window[None])] for window in windows]
                loss, aux = loss_fn(outputs, extras)
            return loss, tape.gradient(loss, windows), aux

        def run(windows: list[np.ndarray], extras: list[np.ndarray]) -> tuple[float, list[np.ndarray], np.ndarray]:
            loss, gradients, aux = step([tf.convert_to_tensor(window) for window in windows], [tf.convert_to_tensor(extra) for extra in extras])
            return float(loss.numpy()), [gradient.numpy() for gradient in gradients], aux.numpy()

        return run

    def make_map(map_fn: ExtrasLoss, n_extras: int) -> Any:
        extra_specs = [tf.TensorSpec(None, tf.float32) for _ in range(n_extras)]

        @tf.function(input_signature=[image_spec, extra_specs], autograph=False)
        def mapped(image: tf.Tensor, extras: list[tf.Tensor]) -> list[tf.Tensor]:
            traces[0] += 1
            return list(map_fn([output[0] for output in features(image[None])], extras))

        def run(image: np.ndarray, extras: list[np.ndarray]) -> list[np.ndarray]:
            return [value.numpy() for value in mapped(tf.convert_to_tensor(image), [tf.convert_to_tensor(extra) for extra in extras])]

        return run

    network = CompiledNetwork(forward, make_windows_grad, make_map)
    network._count = lambda: traces[0]
    return network


def _jax(feature_model: Any) -> CompiledNetwork:
    import jax
    import jax.numpy as jnp

    if not feature_model.built:
        feature_model(np.zeros((1, 64, 64, 3), np.float32), training=False)
    trainable = [variable.value for variable in feature_model.trainable_variables]
    non_trainable = [variable.value for variable in feature_model.non_trainable_variables]

    def outputs_of(image: Any, trainable: Any, non_trainable: Any) -> list[Any]:
        outputs, _ = feature_model.stateless_call(trainable, non_trainable, image[None], training=False)
        return [output[0] for output in _as_list(outputs)]

    forward_jit = jax.jit(outputs_of)

    def forward(image: np.ndarray) -> list[np.ndarray]:
        return [np.array(output) for output in forward_jit(jnp.asarray(image, jnp.float32), trainable, non_trainable)]

    def make_windows_grad(loss_fn: ExtrasLoss, n_windows: int, n_extras: int) -> Any:
        del n_windows, n_extras

        def objective(windows: list[Any], extras: list[Any], trainable: Any, non_trainable: Any) -> Any:
            return loss_fn([outputs_of(window, trainable, non_trainable) for window in windows], extras)

        step = jax.jit(jax.value_and_grad(objective, has_aux=True))

        def run(windows: list[np.ndarray], extras: list[np.ndarray]) -> tuple[float, list[np.ndarray], np.ndarray]:
            (loss, aux), gradients = step([jnp.asarray(window) for window in windows], [jnp.asarray(extra) for extra in extras], trainable, non_trainable)
            return float(loss), [np.array(gradient) for gradient in gradients], np.array(aux)

        return run

    def make_map(map_fn: ExtrasLoss, n_extras: int) -> Any:
        del n_extras
        mapped = jax.jit(lambda image, extras, trainable, non_trainable: list(map_fn(outputs_of(image, trainable, non_trainable), extras)))

        def run(image: np.ndarray, extras: list[np.ndarray]) -> list[np.ndarray]:
            return [np.array(value) for value in mapped(jnp.asarray(image), [jnp.asarray(extra) for extra in extras], trainable, non_trainable)]

        return run

    return CompiledNetwork(forward, make_windows_grad, make_map)
