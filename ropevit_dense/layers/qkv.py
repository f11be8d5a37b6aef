"""Fused q / k / v projection whose key bias is held at zero (EVA-02, DINOv3).

EVA-02 and DINOv3 give queries and values a bias but not keys. Without RoPE a key bias would change nothing (it adds
the same ``q . b`` to every key of a query, which the softmax cancels); with RoPE it would not cancel, because each key
rotates its bias by its own position. So the key third of the bias must stay exactly zero, in training too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QVBiasLinear(nn.Linear):
    """``nn.Linear(dim, 3 * dim)`` for fused qkv whose bias is multiplied by a fixed ``[1, 0, 1]`` mask.

    The parameter keeps the usual name and shape (``bias``, ``(3 * dim,)``), so checkpoints stay plain; the key
    third gets no gradient through the mask and is zeroed at construction, so it stays zero under any optimizer.
    The mask is derived from the shape and is not saved.

    Args:
        in_features (int): input channels.
        out_features (int): ``3 * dim`` (q, k, v stacked in that order).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        if out_features % 3:
            raise ValueError(f"a fused qkv projection needs out_features divisible by 3, got {out_features}")
        super().__init__(in_features, out_features, bias=True)
        third = out_features // 3
        mask = torch.ones(out_features)
        mask[third: 2 * third] = 0.0
        self.register_buffer("bias_mask", mask, persistent=False)
        with torch.no_grad():
            self.bias.mul_(mask)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "bias_mask"):
            with torch.no_grad():
                self.bias.mul_(self.bias_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features)`` → ``(..., out_features)``."""
        return F.linear(x, self.weight, self.bias * self.bias_mask.to(self.bias.dtype))
