"""Patch embedding that accepts any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided convolution, zero-padding the image to a multiple of the patch.

    Args:
        patch_size (int): patch side. Default: 16.
        in_chans (int): input channels. Default: 3.
        embed_dim (int): output channels. Default: 768.
        norm (bool): LayerNorm over the embedding (Swin). Default: False.

    Output: ``(B, ceil(H / p), ceil(W / p), embed_dim)``.
    """

    def __init__(self, *, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768, norm: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x
