"""Rotations from learned skew-symmetric generators: LieRE and ComRoPE (AP and LD).

A token at ``(x, y)`` is rotated by ``R(x, y) = expm(x A_x + y A_y)`` where ``A_x`` and ``A_y`` are skew-symmetric
``head_dim x head_dim`` generators of each head, block-diagonal with blocks of size ``b`` (``b = head_dim`` is the
dense form). Only the blocks are ever built: :func:`generator_table` returns one ``b x b`` rotation per (head,
token, block) as a :class:`~ropevit_dense.rope.rotation.BlockRopeTable` for :func:`apply_rope`, or, for ``b = 2``,
the sin / cos :class:`~ropevit_dense.rope.rotation.RopeTable` of RoPE (a 2x2 generator ``[[0, -w], [w, 0]]`` is
RoPE's rotation by ``w`` per unit of position).

* LieRE (Ostmeier et al., "LieRE: Lie Rotational Positional Encodings", ICML 2025, arXiv:2406.10322; method
  section "LieRE": rotation = matrix exponential of a learned skew-symmetric, position-weighted generator, dense
  or block-diagonal; initialisation from the reference code https://github.com/StanfordMIMI/LieRE,
  ``models/rope_vit.py``): ``A_x``, ``A_y`` free skew-symmetric matrices (their strictly upper triangles are
  learned), initialised uniformly in ``[0, 2 pi)`` for positions normalised to about ``[0, 1]`` over the
  training grid. They do not commute in general, so LieRE is not strictly relative.
* ComRoPE (Yu et al., "ComRoPE: Scalable and Robust Rotary Position Embedding Parameterized by Trainable Commuting
  Angle Matrices", CVPR 2025, arXiv:2506.03737; method section: the "RoPE Equation" holds iff the angle matrices
  commute pairwise, and the two trainable solutions ComRoPE-AP and ComRoPE-LD; parameterisation and
  initialisation from the reference code https://github.com/Longin-Yu/ComRoPE, ``model.py``):

  - ComRoPE-AP (axial partition): block ``j`` belongs to axis ``j mod 2`` and carries ``P_j - P_j^T`` there and
    zero in the other axis' generator; blocks of different axes act on disjoint channels, so they commute.
  - ComRoPE-LD (linearly dependent): ``B_{ij} = theta_{ij} (P_j - P_j^T)``, one base matrix per block and
    per-axis scales, so both axes' generators are multiples of one matrix and commute.

  ``P`` is drawn from ``N(0, 1)`` and the LD scales from ``N(0, 1)`` as in the reference code; positions there are
  normalised to ``[0, 1]`` over the training grid.

Cost: LieRE takes one ``b x b`` matrix exponential per (head, token, block) and attention layer (ViT-B on a
50 x 84 grid: 12 x 4200 x 8 per global block), ComRoPE one per distinct x and per distinct y (its generators
commute, :func:`generator_table`), Spherical RoPE and ``b = 2`` none (closed forms).

Units: the backbones hand integer token coordinates; every module here multiplies them by ``coord_scale``
(``1 / pretraining grid side``, e.g. 1/14 for ViT-B/16 at 224, 1/7 for a Swin window of 7) so generators live in
the papers' normalised units, with the papers' initialisation and learning-rate scale. Relative modes do not
depend on the origin, so the papers' half-token offset is left out.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

from .precision import Float32State
from .rotation import BlockRopeTable, RopeTable, rope_table


def skew_from_upper(upper: torch.Tensor, size: int) -> torch.Tensor:
    """Skew-symmetric matrices from their strictly upper triangles.

    Args:
        upper (Tensor): ``(..., size * (size - 1) // 2)`` entries, row-major over ``i < j``.
        size (int): matrix side.

    Returns:
        Tensor: ``(..., size, size)`` with ``A[i, j] = upper`` and ``A[j, i] = -upper`` for ``i < j``.
    """
    rows, cols = torch.triu_indices(size, size, offset=1, device=upper.device)
    flat = upper.new_zeros((*upper.shape[:-1], size * size)).index_copy(-1, rows * size + cols, upper)
    a = flat.unflatten(-1, (size, size))
    return a - a.transpose(-1, -2)


def _axis_exp(generator: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``expm(v * A)`` for every value: ``(heads, nb, b, b)``, ``(V,)`` → ``(heads, V, nb, b, b)``."""
    return torch.linalg.matrix_exp(values.view(1, -1, 1, 1, 1) * generator[:, None])


def generator_table(generators: torch.Tensor, coords: torch.Tensor, *, commuting: bool = False
                    ) -> Union[RopeTable, BlockRopeTable]:
    """Rotations ``expm(x A_x + y A_y)`` of every (head, token, block), in float32 with autocast off.

    Args:
        generators (Tensor): ``(2, heads, num_blocks, b, b)`` skew-symmetric blocks of ``A_x`` then ``A_y``.
        coords (Tensor): ``(N, 2)`` token positions ``(x, y)``.
        commuting (bool): the caller guarantees ``A_x A_y = A_y A_x`` (ComRoPE); the rotation is then computed as
            ``expm(x A_x) expm(y A_y)``, one exponential per distinct x and per distinct y instead of one per
            token. Default: False.

    Returns:
        RopeTable for ``b = 2`` (angles ``x A_x[1, 0] + y A_y[1, 0]``, the sin / cos path, gradients through
        ``RopeTable.angles``), else BlockRopeTable ``(heads, N, num_blocks, b, b)``. float64 generators give
        float64 tables.
    """
    if generators.ndim != 5 or generators.shape[0] != 2 or generators.shape[-1] != generators.shape[-2]:
        raise ValueError(f"generators must be (2, heads, num_blocks, b, b), got {tuple(generators.shape)}")
    with torch.autocast(device_type=coords.device.type, enabled=False):
        dtype = torch.promote_types(generators.dtype, torch.float32)
        gen, coords = generators.to(dtype), coords.to(dtype)
        if gen.shape[-1] == 2:
            return rope_table(gen[..., 1, 0], coords)
        if commuting:
            xs, ix = torch.unique(coords[:, 0], return_inverse=True)
            ys, iy = torch.unique(coords[:, 1], return_inverse=True)
            return BlockRopeTable(torch.matmul(_axis_exp(gen[0], xs)[:, ix], _axis_exp(gen[1], ys)[:, iy]))
        x, y = coords[:, 0].view(1, -1, 1, 1, 1), coords[:, 1].view(1, -1, 1, 1, 1)
        return BlockRopeTable(torch.linalg.matrix_exp(torch.addcmul(x * gen[0][:, None], y, gen[1][:, None])))


def _check_blocks(head_dim: int, block_size: int, multiple: int, name: str) -> int:
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"{name}: block_size must be an int >= 2, got {block_size!r}")
    if head_dim % (block_size * multiple):
        need = f"{multiple} x block_size = {multiple * block_size}" if multiple > 1 else f"block_size={block_size}"
        raise ValueError(f"{name} needs head_dim divisible by {need}, got head_dim={head_dim}")
    return head_dim // block_size


class _GeneratorRoPE(Float32State):
    """Shared forward of the generator modes: ``skew_generators()`` in normalised units, coordinates scaled."""

    commuting = False

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int, coord_scale: float) -> None:
        super().__init__()
        if not coord_scale > 0:
            raise ValueError(f"coord_scale must be > 0, got {coord_scale}")
        self.head_dim, self.num_heads, self.block_size, self.coord_scale = head_dim, num_heads, block_size, coord_scale

    def skew_generators(self) -> torch.Tensor:
        """``(2, heads, num_blocks, b, b)`` skew-symmetric ``A_x``, ``A_y`` blocks (per normalised unit)."""
        raise NotImplementedError

    def forward(self, coords: torch.Tensor) -> Union[RopeTable, BlockRopeTable]:
        """Table for ``coords`` ``(N, 2)`` (token units), built from the current parameters (nothing cached)."""
        return generator_table(self.skew_generators() * self.coord_scale, coords, commuting=self.commuting)

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, num_heads={self.num_heads}, block_size={self.block_size}, "
                f"coord_scale={self.coord_scale:.4g}")


class LieRE(_GeneratorRoPE):
    """LieRE: ``expm(x A_x + y A_y)`` with free learned skew-symmetric generators per head (Ostmeier et al. 2025).

    Args:
        head_dim (int): channels per head, divisible by ``block_size``.
        num_heads (int): heads (each has its own generators).
        block_size (int): side of the diagonal generator blocks; ``head_dim`` gives the dense LieRE. Default: 8.
        coord_scale (float): normalised units per token step. Default: 1.
        generator (torch.Generator | None): random source of the initialisation.

    Parameters:
        generators: ``(2, heads, num_blocks, b (b - 1) / 2)`` strictly upper triangles of the ``A_x`` / ``A_y``
        blocks, initialised uniformly in ``[0, 2 pi)`` (reference code).
    """

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int = 8, coord_scale: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(head_dim=head_dim, num_heads=num_heads, block_size=block_size, coord_scale=coord_scale)
        nb = _check_blocks(head_dim, block_size, 1, "LieRE")
        upper = block_size * (block_size - 1) // 2
        self.generators = nn.Parameter(torch.rand(2, num_heads, nb, upper, generator=generator) * (2 * math.pi))

    def skew_generators(self) -> torch.Tensor:
        return skew_from_upper(self.generators, self.block_size)


class ComRoPEAP(_GeneratorRoPE):
    """ComRoPE-AP: block ``j`` rotates with axis ``j mod 2`` only, by ``expm(t (P_j - P_j^T))`` (Yu et al. 2025).

    Args:
        head_dim (int): channels per head, divisible by ``2 * block_size`` (as many x blocks as y blocks).
        num_heads (int): heads (each has its own matrices).
        block_size (int): side of the angle-matrix blocks. Default: 8.
        coord_scale (float): normalised units per token step. Default: 1.
        init_std (float): standard deviation of ``P``. Default: 1 (reference code).
        generator (torch.Generator | None): random source of the initialisation.

    Parameters:
        generators: ``(heads, num_blocks, b, b)`` the matrices ``P_j``.
    """

    commuting = True

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int = 8, coord_scale: float = 1.0,
                 init_std: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(head_dim=head_dim, num_heads=num_heads, block_size=block_size, coord_scale=coord_scale)
        nb = _check_blocks(head_dim, block_size, 2, "ComRoPE-AP")
        self.generators = nn.Parameter(torch.randn(num_heads, nb, block_size, block_size, generator=generator)
                                       * init_std)

    def skew_generators(self) -> torch.Tensor:
        skew = self.generators - self.generators.transpose(-1, -2)
        axis = torch.arange(skew.shape[1], device=skew.device) % 2  # block j follows x (j even) or y (j odd)
        masks = torch.stack((axis == 0, axis == 1)).to(skew.dtype).view(2, 1, -1, 1, 1)
        return skew.unsqueeze(0) * masks


class ComRoPELD(_GeneratorRoPE):
    """ComRoPE-LD: ``A_x``, ``A_y`` blocks ``theta_{x,j} S_j`` and ``theta_{y,j} S_j``, ``S_j = P_j - P_j^T``.

    Args:
        head_dim (int): channels per head, divisible by ``block_size``.
        num_heads (int): heads (each has its own base matrices; the axis scales are shared by the heads, as in the
            reference code).
        block_size (int): side of the angle-matrix blocks. Default: 8.
        coord_scale (float): normalised units per token step. Default: 1.
        init_std (float): standard deviation of ``P``. Default: 1 (reference code).
        generator (torch.Generator | None): random source of the initialisation.

    Parameters:
        generators: ``(heads, num_blocks, b, b)`` the base matrices ``P_j``.
        axis_scales: ``(2, num_blocks)`` the scales ``theta_{x,j}``, ``theta_{y,j}``, drawn from ``N(0, 1)``.
    """

    commuting = True

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int = 8, coord_scale: float = 1.0,
                 init_std: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(head_dim=head_dim, num_heads=num_heads, block_size=block_size, coord_scale=coord_scale)
        nb = _check_blocks(head_dim, block_size, 1, "ComRoPE-LD")
        self.generators = nn.Parameter(torch.randn(num_heads, nb, block_size, block_size, generator=generator)
                                       * init_std)
        self.axis_scales = nn.Parameter(torch.randn(2, nb, generator=generator))

    def skew_generators(self) -> torch.Tensor:
        skew = self.generators - self.generators.transpose(-1, -2)
        return skew.unsqueeze(0) * self.axis_scales.view(2, 1, -1, 1, 1)
