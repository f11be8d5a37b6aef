"""Simple feature pyramid from a single-scale ViT map (ViTDet, Li et al. ECCV 2022).

Two layouts are used in the literature:
    * ViTDet Mask R-CNN: ``scale_factors=(4.0, 2.0, 1.0, 0.5)`` plus a max-pooled top level (strides 4..64);
    * detrex DINO-ViTDet: ``scale_factors=(2.0, 1.0, 0.5)`` plus a max-pooled p6 (strides 8, 16, 32, 64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

SCALES = (4.0, 2.0, 1.0, 0.5)


def _resample(in_channels: int, scale: float) -> tuple[nn.Module, int]:
    """The per-level resampling branch and its output channels."""
    if scale == 4.0:
        return nn.Sequential(
            nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2),
            LayerNorm2d(in_channels // 2, eps=1e-6),
            nn.GELU(),
            nn.ConvTranspose2d(in_channels // 2, in_channels // 4, 2, stride=2),
        ), in_channels // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2), in_channels // 2
    if scale == 1.0:
        return nn.Identity(), in_channels
    if scale == 0.5:
        return nn.MaxPool2d(2, stride=2), in_channels
    raise ValueError(f"unsupported pyramid scale factor {scale}; expected one of {SCALES}")


class PyramidLevel(nn.Module):
    """Resample, then 1x1 and 3x3 convolutions, each followed by LayerNorm2d (convs have no bias)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float) -> None:
        super().__init__()
        self.resample, mid = _resample(in_channels, scale)
        self.lateral = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.lateral_norm = LayerNorm2d(out_channels, eps=1e-6)
        self.output = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.output_norm = LayerNorm2d(out_channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_norm(self.output(self.lateral_norm(self.lateral(self.resample(x)))))


class SimplePyramid(nn.Module):
    """Multi-scale maps from the last ViT map.

    Args:
        in_channels (int): channels of the backbone map.
        in_stride (int): stride of the backbone map. Default: 16.
        out_channels (int): channels of every level. Default: 256.
        scale_factors (Sequence[float]): resampling of each level, from fine to coarse, out of
            ``(4.0, 2.0, 1.0, 0.5)``. Default: ``(2.0, 1.0, 0.5)`` (DINO-ViTDet).
        top_block (bool): add a level at twice the coarsest stride by max-pooling it (kernel 1, stride 2).
            Default: True.

    Forward: a ``(B, in_channels, H, W)`` map (or a tuple whose last element is one) → tuple of
    ``(B, out_channels, h_i, w_i)`` maps with strides :attr:`strides`.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        in_stride: int = 16,
        out_channels: int = 256,
        scale_factors: Sequence[float] = (2.0, 1.0, 0.5),
        top_block: bool = True,
    ) -> None:
        super().__init__()
        scale_factors = tuple(float(s) for s in scale_factors)
        if not scale_factors or list(scale_factors) != sorted(scale_factors, reverse=True):
            raise ValueError(f"scale_factors must be non-empty and decreasing, got {scale_factors}")
        if in_channels % 4:
            raise ValueError(f"in_channels must be divisible by 4, got {in_channels}")
        self.levels = nn.ModuleList(PyramidLevel(in_channels, out_channels, s) for s in scale_factors)
        self.strides = tuple(int(in_stride / s) for s in scale_factors)
        self.top_block = top_block
        if top_block:
            self.strides += (self.strides[-1] * 2,)
        self.out_channels = out_channels
        # log2-contiguous strides, as detectron2's FPN-style heads expect
        stages = [math.log2(s) for s in self.strides]
        if any(b - a != 1 for a, b in zip(stages, stages[1:])):
            raise ValueError(f"pyramid strides {self.strides} are not log2-contiguous")

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.Tensor):
            x = x[-1]
        outs = [level(x) for level in self.levels]
        if self.top_block:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
