"""Input gradients (neurofilters.filters.gradients) on the real Lite0, on TensorFlow and, in a subprocess, JAX and torch.

Also the network surgery behind them: batch norms folded into convolutions and
the ReLU6 modes, checked against the untouched zoo network.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from neurofilters.filters.gradients import (
    PRECISIONS,
    RELU6_MODES,
    gradient_feature_model,
    make_gradient_fn,
    resolve_precision,
    supported_backends,
)
from neurofilters.filters.gradients import _network
from neurofilters.filters.gradients import has_relu6, prepare_network
from neurofilters.filters.gradients._network import cpu_has_native_bfloat16
from neurofilters.plugin_host import ModelCache

LAYER = "block5_expand_act"


@pytest.fixture(scope="module")
def lite0():
    return ModelCache().get("lite0")


@pytest.fixture(scope="module")
def lite0_features(lite0) -> keras.Model:
    return lite0.feature_model([LAYER])


def mean_loss(outputs):
    return keras.ops.mean(outputs[0], axis=(1, 2, 3))


def image(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)


def test_backends_listed() -> None:
    assert supported_backends() == ("tensorflow", "jax", "torch")


def test_gradient_matches_finite_differences(lite0_features) -> None:
    gradient = make_gradient_fn(lite0_features, mean_loss)
    x = image(0)
    losses, grad = gradient(x)
    assert losses.shape == (1,) and grad.shape == x.shape and np.abs(grad).sum() > 0
    direction = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    eps = 1e-2
    plus, _ = gradient(x + eps * direction)
    minus, _ = gradient(x - eps * direction)
    numeric = float(plus[0] - minus[0]) / (2 * eps)
    analytic = float((grad * direction).sum())
    assert abs(numeric - analytic) <= 0.05 * abs(analytic), (numeric, analytic)


def test_shift_rolls_the_input_and_unrolls_the_gradient(lite0_features) -> None:
    gradient = make_gradient_fn(lite0_features, mean_loss)
    x = image(4, 64)
    losses, grad = gradient(x, (5, -9))
    rolled_losses, rolled_grad = gradient(np.roll(x, (5, -9), (1, 2)))
    np.testing.assert_allclose(losses, rolled_losses, rtol=1e-5)
    np.testing.assert_allclose(grad, np.roll(rolled_grad, (-5, 9), (1, 2)), rtol=1e-4, atol=1e-8)


def test_batch_norms_fold_into_convolutions(lite0) -> None:
    """The prepared network computes what the zoo network computes, with no batch-norm arithmetic left."""
    folded, changed = prepare_network(lite0.keras_model, relu6="keep")
    assert changed
    kinds = {type(layer).__name__ for layer in folded.layers}
    assert "BatchNormalization" not in kinds and "_FoldedAway" in kinds
    x = (image(5, 96)[0] * 255.0 - 127.0) / 128.0
    np.testing.assert_allclose(folded(x[None]), lite0.keras_model(x[None]), rtol=1e-3, atol=1e-3)
    features = gradient_feature_model(lite0, [LAYER], relu6="keep")
    original = lite0.feature_model([LAYER])(image(5, 96))[0]
    np.testing.assert_allclose(features(image(5, 96))[0], original, rtol=1e-4, atol=1e-4)
    assert gradient_feature_model(lite0, [LAYER], relu6="keep") is features  # cached


def test_only_a_batch_norm_alone_after_a_convolution_called_once_is_folded() -> None:
    """The layer graph is read from the model's config: a convolution with a second consumer or a second call stays."""
    images = keras.Input((12, 12, 3))
    alone = keras.layers.Conv2D(4, 3, padding="same", name="alone")(images)
    normed = keras.layers.BatchNormalization(name="alone_bn")(alone)
    branched = keras.layers.Conv2D(4, 3, padding="same", name="branched")(normed)
    also = keras.layers.ReLU(name="also")(branched)
    branched_bn = keras.layers.BatchNormalization(name="branched_bn")(branched)
    shared = keras.layers.Conv2D(4, 1, name="shared")
    twice = shared(shared(keras.layers.Add(name="join")([also, branched_bn])))
    outputs = keras.layers.BatchNormalization(name="shared_bn")(twice)
    network = keras.Model(images, outputs)
    for norm in ("alone_bn", "branched_bn", "shared_bn"):  # statistics that change the output when folded
        layer = network.get_layer(norm)
        layer.set_weights([w + np.random.default_rng(3).random(w.shape).astype(np.float32) for w in layer.get_weights()])
    prepared, changed = prepare_network(network, relu6="keep")
    assert changed
    assert {layer.name: type(layer).__name__ for layer in prepared.layers if layer.name.endswith("_bn")} == {
        "alone_bn": "_FoldedAway", "branched_bn": "BatchNormalization", "shared_bn": "BatchNormalization"}
    x = image(2, 12)
    np.testing.assert_allclose(prepared(x), network(x), rtol=1e-4, atol=1e-4)


def test_relu6_modes(lite0) -> None:
    """pass-gradient: same forward, gradient flows through saturated units; unbounded: no cap."""
    assert RELU6_MODES == ("unbounded", "pass-gradient", "keep")
    bright = np.clip(image(6, 96) * 3.0 - 1.0, 0.0, 1.0)  # saturates many units
    layer = "block2_expand_act"
    outputs = {mode: np.asarray(gradient_feature_model(lite0, [layer], relu6=mode)(bright)[0]) for mode in RELU6_MODES}
    assert outputs["keep"].max() == pytest.approx(6.0) and (outputs["keep"] >= 6.0).mean() > 0.001
    np.testing.assert_allclose(outputs["pass-gradient"], outputs["keep"], atol=1e-5)
    assert outputs["unbounded"].max() > 6.5
    grads = {
        mode: make_gradient_fn(gradient_feature_model(lite0, [layer], relu6=mode), mean_loss)(bright)[1]
        for mode in RELU6_MODES
    }
    assert np.abs(grads["pass-gradient"] - grads["keep"]).mean() > 0.01 * np.abs(grads["keep"]).mean()
    with pytest.raises(ValueError, match="relu6=.sometimes."):
        prepare_network(lite0.keras_model, relu6="sometimes")


def test_has_relu6_finds_the_units_the_relu6_setting_changes(lite0) -> None:
    """Lite0's ReLU6 activations are found, VGG16's plain ReLUs are not, nor those of Lite0 made unbounded."""
    assert has_relu6(lite0.keras_model)
    assert not has_relu6(ModelCache().get("vgg16-hed").keras_model)
    assert not has_relu6(prepare_network(lite0.keras_model, relu6="unbounded")[0])


def test_batched_samples_get_their_own_gradients(lite0_features) -> None:
    gradient = make_gradient_fn(lite0_features, mean_loss)
    a, b = image(2), image(3)
    losses, grads = gradient(np.concatenate([a, b]))
    for index, single in enumerate((a, b)):
        loss, grad = gradient(single)
        np.testing.assert_allclose(losses[index], loss[0], rtol=1e-5)
        np.testing.assert_allclose(grads[index], grad[0], rtol=1e-3, atol=1e-7)


def test_cpu_bfloat16_flags_are_read_from_cpuinfo() -> None:
    epyc = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
    older = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    sapphire = "flags\t\t: avx512f amx_bf16 amx_tile\n"
    assert cpu_has_native_bfloat16(epyc) and cpu_has_native_bfloat16(sapphire)
    assert not cpu_has_native_bfloat16(older) and not cpu_has_native_bfloat16("no flags line")


def test_auto_precision_is_bfloat16_only_for_plain_convolutions_on_a_bfloat16_cpu(lite0) -> None:
    vgg = ModelCache().get("vgg16-hed").keras_model
    assert PRECISIONS == ("auto", "float32", "bfloat16")
    assert _network.resolve_precision("auto", vgg, native_bfloat16=True) == "bfloat16"
    assert _network.resolve_precision("auto", vgg, native_bfloat16=False) == "float32"
    # Depthwise convolutions (Lite0) have no fast bfloat16 kernel on CPU: float32 even there.
    assert _network.resolve_precision("auto", lite0.keras_model, native_bfloat16=True) == "float32"
    assert resolve_precision("auto", lite0) == "float32"
    assert resolve_precision("auto", vgg) == ("bfloat16" if cpu_has_native_bfloat16() else "float32")
    for explicit in ("float32", "bfloat16"):
        assert resolve_precision(explicit, lite0) == explicit
    with pytest.raises(ValueError, match="precision=.half."):
        resolve_precision("half", lite0)
    with pytest.raises(ValueError, match="precision=.auto."):
        prepare_network(vgg, precision="auto")


def test_bfloat16_network_gives_float32_outputs_and_a_close_gradient() -> None:
    vgg = ModelCache().get("vgg16-hed")
    layers = ["block3_conv3", "block4_conv3"]

    def loss(outputs):
        return keras.ops.mean(outputs[0], axis=(1, 2, 3)) + keras.ops.mean(outputs[1], axis=(1, 2, 3))

    x = np.random.default_rng(4).random((1, 64, 80, 3), dtype=np.float32)
    single = gradient_feature_model(vgg, layers, precision="float32")
    half = gradient_feature_model(vgg, layers, precision="bfloat16")
    assert half is not single and half is gradient_feature_model(vgg, layers, precision="bfloat16")
    prepared, changed = prepare_network(vgg.keras_model, precision="bfloat16")
    assert changed and prepared.get_layer("block4_conv3").compute_dtype == "bfloat16"
    assert vgg.keras_model.get_layer("block4_conv3").compute_dtype == "float32"  # the zoo's network is untouched
    assert all(keras.backend.standardize_dtype(output.dtype) == "float32" for output in half(x))
    reference_loss, reference = make_gradient_fn(single, loss)(x)
    step = make_gradient_fn(half, loss)
    losses, grad = step(x)
    assert grad.dtype == np.float32 and np.isfinite(grad).all()
    np.testing.assert_allclose(losses, reference_loss, rtol=0.02)
    cosine = float((grad * reference).sum() / np.linalg.norm(grad) / np.linalg.norm(reference))
    assert cosine > 0.99, cosine
    assert cosine < 1.0 - 1e-7  # it really computed in bfloat16
    np.testing.assert_array_equal(step(x)[1], grad)  # deterministic


_OTHER_BACKEND = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import keras
    from neurofilters.filters.deepdream import engine
    from neurofilters.plugin_host import ModelCache, apply_filter, build_registry
    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    x = np.load(sys.argv[2])
    spec = build_registry(autoload=False).get_filter("deepdream")
    photo = np.asarray(x[0], np.float32)
    # The filter with its default objective (folded, ReLU6-unbounded Lite0), one octave so
    # that a compiling backend (JAX) compiles once; the comparison reuses that compiled step.
    out = apply_filter(spec, photo, {"octaves": 1, "steps": 3}, seed=1)
    assert out.shape == photo.shape and np.isfinite(out).all() and np.abs(out - photo).mean() > 1e-3
    objective = engine.build_objective(ModelCache().get("lite0"), engine.DreamSettings())
    losses, grad = objective.gradient(x, (3, -4))
    np.savez(sys.argv[3], losses=losses, grad=grad)
    print("ok", keras.backend.backend())
    """
)


OTHER_BACKENDS = ("jax", "torch")


@pytest.fixture(scope="module")
def other_backends(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, lite0) -> tuple[np.ndarray, dict]:
    """Run the script under every other installed backend, all at once.

    Their start-up (imports, model building) is mostly single-threaded Python, so
    running them side by side roughly halves the wall time on two cores. The
    environment is isolated explicitly: module fixtures run before the per-test one.
    """
    from skimage import data

    folder = tmp_path_factory.mktemp("backends")
    photo = np.asarray(keras.ops.image.resize(data.chelsea()[None, 60:220, 120:280] / 255.0, (64, 64)), np.float32)
    np.save(folder / "x.npy", photo)
    script = folder / "other_backend.py"
    script.write_text(_OTHER_BACKEND)
    running = {}
    for backend in OTHER_BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        env = {
            **os.environ,
            "KERAS_BACKEND": backend,
            "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1",
            "NEUROFILTERS_CACHE_DIR": os.fspath(cache_dir),
        }
        command = [sys.executable, str(script), backend, str(folder / "x.npy"), str(folder / f"{backend}.npz")]
        running[backend] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for backend, process in running.items():
        _, stderr = process.communicate(timeout=600)
        results[backend] = (process.returncode, stderr, folder / f"{backend}.npz")
    return photo, results


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_other_backends_agree_with_tensorflow(backend: str, lite0, other_backends) -> None:
    """JAX (and torch when installed): the filter runs (smoke) and its gradient step matches TensorFlow's."""
    photo, results = other_backends
    if backend not in results:
        pytest.skip(f"{backend} is not installed")
    returncode, stderr, path = results[backend]
    assert returncode == 0, stderr[-3000:]
    theirs = np.load(path)
    from neurofilters.filters.deepdream import engine

    losses, grad = engine.build_objective(lite0, engine.DreamSettings()).gradient(photo, (3, -4))
    np.testing.assert_allclose(theirs["losses"], losses, rtol=1e-4)
    error = np.abs(theirs["grad"] - grad).max() / np.abs(grad).max()
    assert error < 1e-3, error
