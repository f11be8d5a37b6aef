"""Frequency sets of axial and mixed 2D RoPE (Heo et al., ECCV 2024).

Both return ``(2, heads, head_dim // 2)``: row 0 multiplies x positions, row 1 y positions (see
:mod:`ropevit_dense.rope.rotation`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch


def _check_head_dim(head_dim: int) -> None:
    if head_dim % 4 != 0:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4 (x and y pairs), got head_dim={head_dim}")


def base_magnitudes(head_dim: int, theta: float) -> torch.Tensor:
    """``head_dim // 4`` magnitudes ``theta ** (-4k / head_dim)``, as the RoPE-ViT reference."""
    _check_head_dim(head_dim)
    return 1.0 / (theta ** (torch.arange(0, head_dim, 4, dtype=torch.float32)[: head_dim // 4] / head_dim))


def axial_frequencies(head_dim: int, theta: float = 100.0, num_heads: int = 1, *, scale: float = 1.0,
                      y_first: bool = False) -> torch.Tensor:
    """Fixed axial frequencies: the first ``head_dim // 4`` pairs rotate with x, the rest with y.

    Args:
        head_dim (int): channels per head (divisible by 4).
        theta (float): frequency base; pair ``k`` of an axis turns at ``scale * theta ** (-4k / head_dim)``.
        num_heads (int): heads (the frequencies are the same in every head).
        scale (float): factor on every frequency: 1 for RoPE-ViT and EVA-02 (radians per token index), ``2 * pi``
            for DINOv3, whose periods ``theta ** (4k / head_dim)`` are measured in its normalised coordinates.
        y_first (bool): the first half of the pairs rotates with y and the second with x, as in EVA-02 and
            DINOv3 (their pretrained q / k channels depend on it). Default: False (RoPE-ViT).

    Returns:
        Tensor: ``(2, num_heads, head_dim // 2)`` (identical for every head).
    """
    mag = base_magnitudes(head_dim, theta) * scale
    zeros = torch.zeros_like(mag)
    first, second = torch.cat((mag, zeros)), torch.cat((zeros, mag))
    fx, fy = (second, first) if y_first else (first, second)
    return torch.stack((fx, fy)).unsqueeze(1).expand(2, num_heads, head_dim // 2).clone()


def mixed_frequencies(
    head_dim: int,
    num_heads: int,
    theta: float = 10.0,
    *,
    random_angle: bool = True,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Initial learnable frequencies of RoPE-Mixed.

    Each head draws one angle ``a`` uniformly in ``[0, 2*pi)``; its first ``head_dim // 4`` pairs get direction
    ``a`` and the rest direction ``a + pi/2``, with the axial magnitudes. With ``random_angle=False`` (a = 0) this
    is the axial frequency set.

    Returns:
        Tensor: ``(2, num_heads, head_dim // 2)``.
    """
    mag = base_magnitudes(head_dim, theta)
    return split_direction_frequencies(torch.cat((mag, mag)), mag.numel(), num_heads, random_angle=random_angle,
                                       generator=generator)


def split_direction_frequencies(
    magnitudes: torch.Tensor,
    first: int,
    num_heads: int,
    *,
    random_angle: bool = True,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """2D frequency vectors of RoPE-Mixed's initialisation, for any number of rotation units (pairs, 3-D blocks).

    Each head draws one angle ``a`` uniformly in ``[0, 2*pi)`` (0 with ``random_angle=False``); units ``[:first]``
    point along ``a`` and the rest along ``a + pi/2``, each with its magnitude.

    Args:
        magnitudes (Tensor): ``(num_units,)``.
        first (int): how many units take direction ``a``.
        num_heads (int): heads.

    Returns:
        Tensor: ``(2, num_heads, num_units)``: x components, then y components.
    """
    if random_angle:
        angles = torch.rand(num_heads, 1, generator=generator) * (2 * math.pi)
    else:
        angles = torch.zeros(num_heads, 1)
    rest = magnitudes.numel() - first
    direction = torch.cat((angles.expand(-1, first), angles.expand(-1, rest) + math.pi / 2), dim=-1)
    return torch.stack((magnitudes * torch.cos(direction), magnitudes * torch.sin(direction)))
