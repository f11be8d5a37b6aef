"""Random initialisation shared by the backbones (training from scratch; checkpoints overwrite it)."""

from __future__ import annotations

from torch import nn


def init_linear_and_norm(m: nn.Module) -> None:
    """ViT / Swin init of one module: truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
