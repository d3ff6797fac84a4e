"""Stand-in for ``torchvision.transforms``: only ``Normalize``, the one name lucent imports."""

from __future__ import annotations

import torch


class Normalize(torch.nn.Module):
    """Per-channel ``(x - mean) / std`` of a ``C x H x W`` (or batched) tensor, as torchvision's.

    lucent builds it with ImageNet's statistics in ``transform.normalize()``; the benchmark passes
    ``preprocess=False`` and its own Lite preprocessing, so this runs only if a caller asks for it.
    """

    def __init__(self, mean: list[float], std: list[float], inplace: bool = False) -> None:
        super().__init__()
        self.mean, self.std = list(mean), list(std)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - mean) / std
