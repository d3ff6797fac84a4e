"""Convolutions cut into row bands where oneDNN would fall back to its reference kernel (x86 CPUs without AVX-512).

Why by hand: on an x86 CPU without AVX-512, TensorFlow's oneDNN (v3.7 in TensorFlow 2.21) runs a float32
convolution whose weights are read from variables (a Keras model called as it is) as im2col followed by a
GEMM (``x64:gemm:jit`` in ``ONEDNN_VERBOSE``). When the scratch memory that needs (:func:`scratch_bytes`)
would pass 1 GiB, its ``gemm_convolution_utils`` declines the layer, and the only implementation left is the
reference one (``ref:any``), a plain loop. Measured under ``ONEDNN_MAX_CPU_ISA=AVX2`` on the 2-core EPYC
(2026-12-07): VGG16's ``block2_conv2`` at a 1024² input (128 channels at 512²: 1.3 GB of scratch) took 273 s
forward, where the same layer at 448² took 0.85 s; ``activation-maps --model vgg16-hed --work-size 1024``
took 291 s against 8 s at 768. No oneDNN or TensorFlow setting lifts that cap, so :class:`BandedConv2D` runs
such a convolution as bands of output rows stacked along the batch axis, each with the input rows it needs:
the same sums, so the same outputs and gradients (to float32 rounding), with every band's scratch under
:data:`BAND_BYTES`. Where no layer of a network needs it (AVX-512 CPUs, GPUs, JAX, small convolutions), the
network is used as it is. With weights traced as constants oneDNN uses its direct kernel (``brg_conv_fwd``)
instead, which has no such cap, so the compiled steps of texture, DeepDream and saliency ask for no bands
(``max_pixels=0``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras

__all__ = ["BAND_BYTES", "ONEDNN_SCRATCH_CAP", "BandedConv2D", "banded_layer", "banded_layer_names", "banded_network", "banding_here", "copy_layer", "cpu_flags", "gemm_convolutions", "layers_to_band", "needs_im2col", "scratch_bytes"]

#: The scratch memory (bytes, by :func:`scratch_bytes`' count) past which oneDNN's GEMM convolution declines a layer:
#: under the AVX2 cap 3 x 3 convolutions ran at 0.99 GiB by that count (456² x 128 channels, and 0.98 at 320² x 256)
#: and fell back from 1.03 GiB (464² x 128, 330² x 256, 236² x 512).
ONEDNN_SCRATCH_CAP = 2**30
#: Most scratch memory (bytes) one convolution call may ask of oneDNN: its im2col buffer, ``channels x kernel
#: height x kernel width`` values per output pixel, plus the input transposed, ``channels`` per input pixel. A
#: convolution that needs more is cut into row bands that need at most this, seven eighths of the cap (896 MiB).
BAND_BYTES = ONEDNN_SCRATCH_CAP // 8 * 7

#: Layers reading at most this many channels (the RGB image itself: VGG16's ``block1_conv1``, EfficientNet-Lite0's
#: stem) are not banded: a 3 x 3 one needs 120 bytes of scratch per pixel, so it crosses the cap only beyond
#: 8 megapixels in one window, which no filter's window reaches.
_MIN_CHANNELS = 4
#: Side of the symbolic input :func:`layers_to_band` measures a network's layer sizes at.
_PROBE_SIDE = 256

#: ``ONEDNN_MAX_CPU_ISA`` caps without AVX-512 (how an AVX2-only CPU is emulated on an AVX-512 machine).
_ISA_WITHOUT_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def gemm_convolutions(cpuinfo: str | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether oneDNN runs float32 convolutions as im2col + GEMM here: an x86 CPU without AVX-512 (or capped below it).

    Args:
        cpuinfo: Text of ``/proc/cpuinfo`` (read when ``None``; no such file, or no x86 ``flags`` line: ``False``).
        environ: The environment (``os.environ`` when ``None``): ``ONEDNN_MAX_CPU_ISA`` below AVX-512 counts as
            no AVX-512; ``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow's own kernels) as no oneDNN;
            ``NEUROFILTERS_BANDED_CONV=1`` or ``0`` decides instead (to compare, or where the guess is wrong).
    """
    environ = dict(os.environ) if environ is None else environ
    chosen = environ.get("NEUROFILTERS_BANDED_CONV", "").strip()
    if chosen in ("0", "1"):
        return chosen == "1"
    if environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false"):
        return False
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return False
    if environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in _ISA_WITHOUT_AVX512:
        return True
    return "avx512f" not in flags


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The x86 feature flags of ``/proc/cpuinfo`` (or of the text ``cpuinfo``); ``None`` where there is no such file or
    no ``flags`` line (not Linux, not x86)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


@functools.cache
def banding_here() -> bool:
    """Whether this process bands large convolutions: TensorFlow's backend on a CPU :func:`gemm_convolutions` describes.

    Read once per process (the backend and oneDNN's ISA are fixed once TensorFlow is loaded).
    """
    return keras.backend.backend() == "tensorflow" and gemm_convolutions()


def needs_im2col(layer: Any) -> bool:
    """Whether ``layer`` is a plain 2-D convolution oneDNN would run through an im2col buffer worth banding.

    A ``Conv2D`` (not depthwise, separable or transposed: those are other kernels) in channels-last, one group,
    no dilation, whose kernel is larger than 1 x 1 or whose stride is above 1, reading more than ``_MIN_CHANNELS``
    channels.
    """
    if type(layer) not in (keras.layers.Conv2D, BandedConv2D):
        return False
    if layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1 or tuple(layer.dilation_rate) != (1, 1):
        return False
    if tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1):
        return False
    try:
        channels = layer.input.shape[-1]
    except (AttributeError, ValueError):  # not called yet, or shared by several calls
        channels = None
    if channels is None:
        return True
    return int(channels) > _MIN_CHANNELS


def scratch_bytes(channels: int, kernel: tuple[int, int], out_pixels: Any, in_pixels: Any, itemsize: int = 4) -> Any:
    """What oneDNN's GEMM convolution asks for one image (bytes): the im2col buffer plus the transposed input.

    Works on numbers and on tensors alike (``out_pixels`` and ``in_pixels`` of one image).
    """
    return itemsize * channels * (kernel[0] * kernel[1] * out_pixels + in_pixels)


@keras.saving.register_keras_serializable(package="neurofilters")
class BandedConv2D(keras.layers.Conv2D):
    """A ``Conv2D`` that runs as row bands when oneDNN's scratch memory for it would pass ``band_bytes`` (TensorFlow only).

    Where the input's height and width are known when the step is traced, the choice is made then; where they
    are not (a step traced once for every size), inside the graph.

    Args:
        band_bytes: Most scratch memory (:func:`scratch_bytes`) one call may need; :data:`BAND_BYTES` by default.
        **kwargs: Those of ``keras.layers.Conv2D``.
    """

    def __init__(self, *args: Any, band_bytes: int = BAND_BYTES, **kwargs: Any) -> None:
        """A convolution with the band limit ``band_bytes``."""
        super().__init__(*args, **kwargs)
        self.band_bytes = int(band_bytes)

    def get_config(self) -> dict[str, Any]:
        """``Conv2D``'s configuration plus ``band_bytes``."""
        return {**super().get_config(), "band_bytes": self.band_bytes}

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        """``Conv2D``'s convolution, cut into row bands when its scratch memory would pass ``band_bytes``."""
        if keras.backend.backend() != "tensorflow":
            return super().convolution_op(inputs, kernel)
        return _banded_tensorflow(inputs, kernel, tuple(self.strides), self.padding, self.band_bytes, super().convolution_op)


def _banded_tensorflow(inputs: Any, kernel: Any, strides: tuple[int, int], padding: str, band_bytes: int, whole: Any) -> Any:
    """The convolution of ``inputs`` (N, H, W, C) by ``kernel``: ``whole(inputs, kernel)`` when its scratch memory fits
    ``band_bytes``, else the same sums over bands of output rows stacked along the batch axis."""
    import tensorflow as tf

    kh, kw, channels, filters = (int(size) for size in kernel.shape)
    sh, sw = strides
    itemsize = inputs.dtype.size
    static = inputs.shape[1] is not None and inputs.shape[2] is not None
    shape = tf.shape(inputs)
    height, width = (int(inputs.shape[1]), int(inputs.shape[2])) if static else (shape[1], shape[2])
    if padding == "same":
        out_h, out_w = (height + sh - 1) // sh, (width + sw - 1) // sw
        pad_h = tf.maximum((out_h - 1) * sh + kh - height, 0)
        pad_w = tf.maximum((out_w - 1) * sw + kw - width, 0)
    else:
        out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
        pad_h = pad_w = tf.constant(0, tf.int32)
    if static:
        if scratch_bytes(channels, (kh, kw), out_h * out_w, height * width, itemsize) <= band_bytes:
            return whole(inputs, kernel)
    wide = tf.cast(out_w, tf.int64)
    # One band of r output rows needs channels x (kh kw r out_w + ((r - 1) sh + kh) W') values: solve for r.
    padded_w = tf.cast(width, tf.int64) + tf.cast(pad_w, tf.int64)
    per_row = itemsize * channels * (kh * kw * wide + sh * padded_w)
    fixed = itemsize * channels * (kh - sh) * padded_w

    def banded() -> Any:
        padded = tf.pad(inputs, [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
        rows = tf.cast(tf.maximum((band_bytes - fixed) // per_row, 1), tf.int32)
        frames = tf.signal.frame(padded, (rows - 1) * sh + kh, rows * sh, axis=1, pad_end=True)  # (N, bands, rows', W', C)
        frame_shape = tf.shape(frames)
        stacked = tf.reshape(frames, tf.stack([frame_shape[0] * frame_shape[1], frame_shape[2], frame_shape[3], channels]))
        out = tf.nn.conv2d(stacked, tf.cast(kernel, inputs.dtype), strides=[1, sh, sw, 1], padding="VALID")
        out = tf.reshape(out, tf.stack([frame_shape[0], frame_shape[1] * rows, out_w, filters]))
        return out[:, :out_h]

    if static:
        return banded()
    need = scratch_bytes(channels, (kh, kw), wide * tf.cast(out_h, tf.int64), tf.cast(height, tf.int64) * tf.cast(width, tf.int64), itemsize)
    return tf.cond(need > band_bytes, banded, lambda: whole(inputs, kernel))


def banded_layer(layer: Any, config: dict[str, Any] | None = None, band_bytes: int = BAND_BYTES) -> BandedConv2D:
    """A :class:`BandedConv2D` with ``layer``'s configuration (or ``config``) and ``band_bytes``, built, without weights set."""
    config = {**(layer.get_config() if config is None else config), "band_bytes": int(band_bytes)}
    new = BandedConv2D.from_config(config)
    new.build(layer.input.shape)
    return new


def copy_layer(layer: Any, config: dict[str, Any] | None = None) -> Any:
    """A new layer of ``layer``'s class from its configuration (or ``config``), built and holding its weights."""
    new = layer.__class__.from_config(layer.get_config() if config is None else config)
    if layer.weights:
        new.build(layer.input.shape)
        new.set_weights(layer.get_weights())
    return new


#: :func:`_layer_sizes` per network, by id (the network is held, so that its id is not reused while the entry lives).
_SIZES: dict[int, tuple[Any, dict[str, tuple[int, tuple[int, int], float, float]]]] = {}


def _layer_sizes(network: Any, risky: list[Any]) -> dict[str, tuple[int, tuple[int, int], float, float]]:
    """Per layer of ``risky``: its input channels and kernel size, and its input's and output's pixels per network input
    pixel, from one symbolic pass at :data:`_PROBE_SIDE` (or the network's fixed input size); cached per network."""
    entry = _SIZES.get(id(network))
    if entry is not None and entry[0] is network:
        return entry[1]
    fixed = tuple(network.inputs[0].shape[1:3])
    side = fixed if None not in fixed else (_PROBE_SIDE, _PROBE_SIDE)
    probe = keras.Model(network.inputs, [[layer.input, layer.output] for layer in risky])
    outputs = probe(keras.KerasTensor((1, *side, int(network.inputs[0].shape[-1] or 3))))
    pixels = side[0] * side[1]
    sizes = {}
    for layer, (seen, made) in zip(risky, outputs):
        kernel = (int(layer.kernel_size[0]), int(layer.kernel_size[1]))
        sizes[layer.name] = (int(seen.shape[-1]), kernel, seen.shape[1] * seen.shape[2] / pixels, made.shape[1] * made.shape[2] / pixels)
    _SIZES[id(network)] = (network, sizes)
    return sizes


def layers_to_band(network: Any, max_pixels: int | None = None, band_bytes: int = BAND_BYTES) -> frozenset[str]:
    """The names of ``network``'s layers to band: those that :func:`needs_im2col`, and, when the caller bounds its inputs
    by ``max_pixels`` (input pixels of one image), only those whose scratch memory there would pass ``band_bytes``
    (``0``: none, for steps that hold the weights as constants, which oneDNN runs with its direct kernel).

    Where the sizes cannot be worked out (a network that cannot be called symbolically), every such layer.
    """
    if max_pixels == 0:  # the caller's steps hold the weights as constants: oneDNN's direct kernel, no cap
        return frozenset()
    risky = [layer for layer in getattr(network, "layers", ()) if needs_im2col(layer)]
    if not risky or max_pixels is None:
        return frozenset(layer.name for layer in risky)
    try:
        sizes = _layer_sizes(network, risky)
    except Exception:  # exotic graphs: band them all, the choice is then made when each call's size is known
        return frozenset(layer.name for layer in risky)
    return frozenset(
        name for name, (channels, kernel, seen, made) in sizes.items()
        if scratch_bytes(channels, kernel, made * max_pixels, seen * max_pixels) > band_bytes
    )


def banded_layer_names(network: Any, max_pixels: int | None = None) -> frozenset[str]:
    """:func:`layers_to_band` where this process bands (:func:`banding_here`), else none."""
    return layers_to_band(network, max_pixels) if banding_here() else frozenset()


def banded_network(network: Any, *, names: frozenset[str] | None = None, max_pixels: int | None = None, force: bool = False,
                   band_bytes: int = BAND_BYTES) -> Any:
    """``network``, or a clone whose layers ``names`` are :class:`BandedConv2D` (``band_bytes``) with the same weights.

    Args:
        network: A functional ``keras.Model``; it is never changed.
        names: The layers to band; ``None``: :func:`layers_to_band` of ``max_pixels`` where this process bands
            (:func:`banding_here`, or ``force``), else none.
        max_pixels: The largest input (pixels of one image) it will be called on, when the caller bounds it.
        force: Band even where this process would not (tests, comparisons).
        band_bytes: The bands' limit.

    Returns:
        The clone, or ``network`` itself (nothing to band, or it cannot be cloned).
    """
    if names is None:
        names = layers_to_band(network, max_pixels, band_bytes) if (force or banding_here()) else frozenset()
    if not names:
        return network

    def clone(layer: Any) -> Any:
        if layer.name not in names:
            return copy_layer(layer)
        new = banded_layer(layer, band_bytes=band_bytes)
        new.set_weights(layer.get_weights())
        return new

    try:
        return keras.models.clone_model(network, clone_function=clone)
    except Exception:  # subclassed or exotic models: run the original network
        return network
