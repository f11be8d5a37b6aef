"""Spherical RoPE: 3-D rotations about two different axes, one per image axis, so not strictly relative.

Van de Geijn et al., "A Circular Argument: Does RoPE need to be Equivariant for Vision?" (2025, arXiv:2511.08368;
the method section introducing Spherical RoPE as the non-commutative analogue of Mixed RoPE): RoPE-Mixed is the
general relative (equivariant) 2D RoPE because its generators commute; Spherical RoPE keeps RoPE-Mixed's learned
per-head frequencies but gives the x and y rotations non-commuting generators, rotating 3-D channel blocks on a
sphere instead of 2-D pairs on a circle. Here block ``j`` of head ``h`` at ``(x, y)`` is turned by
``a = x * fx[h, j]`` in the plane of its channels (0, 1), then by ``b = y * fy[h, j]`` in the plane of its
channels (1, 2):

    R = R12(b) @ R01(a) = [[cos a,          -sin a,          0     ],
                           [cos b sin a,     cos b cos a,   -sin b ],
                           [sin b sin a,     sin b cos a,    cos b ]]

The two planes and the order (x first, then y) are this package's convention. Tokens of one image row (same y)
are still exactly relative (``R(x1, y)^T R(x2, y) = R01(a2 - a1)``); a vertical shift is not.
``head_dim // 3`` blocks are rotated; the ``head_dim % 3`` channels left over (one for head_dim 64) carry no
position. The frequencies start as RoPE-Mixed's (random direction per head, RoPE-ViT magnitudes with theta 10),
spread over the blocks; with ``fy = 0`` a block is the RoPE rotation of its channels (0, 1).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .frequencies import split_direction_frequencies
from .grid import Coords, flat_coords
from .precision import Float32State
from .rotation import BlockRopeTable


def spherical_frequencies(
    head_dim: int,
    num_heads: int,
    theta: float = 10.0,
    *,
    random_angle: bool = True,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Initial frequencies of Spherical RoPE, laid out as RoPE-Mixed's (:func:`mixed_frequencies`) over 3-D blocks.

    Each head draws an angle ``a`` uniformly in ``[0, 2 pi)``; the first ``ceil(n / 2)`` of its ``n = head_dim // 3``
    blocks get direction ``a``, the rest ``a + pi / 2``, and the blocks of each half magnitudes
    ``theta ** (-k / half)``, ``k = 0, 1, ...``.

    Returns:
        Tensor: ``(2, num_heads, head_dim // 3)``: x frequencies, then y frequencies.
    """
    num_blocks = head_dim // 3
    if num_blocks < 1:
        raise ValueError(f"Spherical RoPE needs head_dim >= 3 (3-D channel blocks), got head_dim={head_dim}")
    first = (num_blocks + 1) // 2
    mag = theta ** (-torch.arange(first, dtype=torch.float32) / first)
    mag = torch.cat((mag, mag[: num_blocks - first]))
    return split_direction_frequencies(mag, first, num_heads, random_angle=random_angle, generator=generator)


def spherical_blocks(freqs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The 3x3 rotations of every (head, token, block), in float32 (float64 for float64 ``freqs``), autocast off.

    Args:
        freqs (Tensor): ``(2, heads, num_blocks)`` x then y frequencies.
        coords (Tensor): ``(N, 2)`` token positions ``(x, y)``.

    Returns:
        Tensor: ``(heads, N, num_blocks, 3, 3)`` ``R12(y fy) @ R01(x fx)``.
    """
    with torch.autocast(device_type=coords.device.type, enabled=False):
        dtype = torch.promote_types(freqs.dtype, torch.float32)
        freqs, coords = freqs.to(dtype), coords.to(dtype)
        a = coords[None, :, 0, None] * freqs[0, :, None, :]  # (heads, N, num_blocks)
        b = coords[None, :, 1, None] * freqs[1, :, None, :]
        ca, sa, cb, sb = a.cos(), a.sin(), b.cos(), b.sin()
        zero = torch.zeros_like(ca)
        rows = (ca, -sa, zero, cb * sa, cb * ca, -sb, sb * sa, sb * ca, cb)
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


class SphericalRoPE(Float32State):
    """Spherical RoPE: learnable per-head frequencies of non-commuting 3-D rotations (one module per attention layer).

    Args:
        head_dim (int): channels per head (>= 3; ``head_dim % 3`` channels stay unrotated).
        num_heads (int): heads.
        theta (float): magnitude base of the initial frequencies. Default: 10 (RoPE-Mixed's).
    """

    def __init__(self, *, head_dim: int, num_heads: int, theta: float = 10.0) -> None:
        super().__init__()
        self.head_dim, self.num_heads, self.theta = head_dim, num_heads, theta
        self.freqs = nn.Parameter(spherical_frequencies(head_dim, num_heads, theta))

    def forward(self, coords: Coords) -> BlockRopeTable:
        """Table for ``coords`` ``(N, 2)`` (or a grid's) → blocks ``(num_heads, N, head_dim // 3, 3, 3)``."""
        return BlockRopeTable(spherical_blocks(self.freqs, flat_coords(coords)))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_heads={self.num_heads}, theta={self.theta}"
