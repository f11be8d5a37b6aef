"""RoPE modules: frequencies as module state, tables built for the coordinates they are handed."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from .frequencies import axial_frequencies, mixed_frequencies
from .grid import POSITION_MODES
from .rotation import RopeTable, rope_table

RopeType = Literal["axial", "mixed"]
ROPE_TYPES = ("axial", "mixed")
# theta per (rope type, backbone family), as the RoPE-ViT reference and its released checkpoints.
DEFAULT_THETA = {("axial", "vit"): 100.0, ("mixed", "vit"): 10.0, ("axial", "swin"): 50.0, ("mixed", "swin"): 10.0}


class AxialRoPE(nn.Module):
    """Axial 2D RoPE: fixed frequencies, shared by every head and every block that uses it.

    Args:
        head_dim (int): channels per head (divisible by 4).
        theta (float): frequency base. Default: 100 (RoPE-ViT; RoPE-Swin uses 50).
    """

    def __init__(self, *, head_dim: int, theta: float = 100.0) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        # derived, not learned: kept out of checkpoints
        self.register_buffer("freqs", axial_frequencies(head_dim, theta), persistent=False)

    def forward(self, coords: torch.Tensor) -> RopeTable:
        """Table for ``coords`` ``(N, 2)`` → sin / cos ``(1, N, head_dim // 2)``."""
        return rope_table(self.freqs, coords)

    def _apply(self, fn, recurse=True):  # keep the frequencies in float32 through .half() / .to(bf16)
        super()._apply(fn, recurse)
        if self.freqs.dtype != torch.float32:
            self.freqs = self.freqs.float()
        return self

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}"


class MixedRoPE(nn.Module):
    """RoPE-Mixed: learnable per-head 2D frequencies (one module per attention layer).

    Args:
        head_dim (int): channels per head (divisible by 4).
        num_heads (int): heads.
        theta (float): magnitude base of the initial frequencies. Default: 10.
    """

    def __init__(self, *, head_dim: int, num_heads: int, theta: float = 10.0) -> None:
        super().__init__()
        self.head_dim, self.num_heads, self.theta = head_dim, num_heads, theta
        self.freqs = nn.Parameter(mixed_frequencies(head_dim, num_heads, theta))

    def forward(self, coords: torch.Tensor) -> RopeTable:
        """Table for ``coords`` ``(N, 2)`` → sin / cos ``(num_heads, N, head_dim // 2)``."""
        return rope_table(self.freqs, coords)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_heads={self.num_heads}, theta={self.theta}"


def check_rope_options(rope_type: Optional[str], rope_position: str = "extrapolate") -> None:
    """Raise ``ValueError`` naming the problem for an unknown ``rope_type`` or ``rope_position``."""
    if rope_type is not None and rope_type not in ROPE_TYPES:
        raise ValueError(f"unknown RoPE mode rope_type='{rope_type}'; expected one of {ROPE_TYPES} or None")
    if rope_position not in POSITION_MODES:
        raise ValueError(f"unknown rope_position '{rope_position}'; expected one of {POSITION_MODES}")
