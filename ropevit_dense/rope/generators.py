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
50 x 84 grid: 12 x 4200 x 8 per global block), by :func:`~ropevit_dense.rope.expm.expm_linear`: the Taylor
polynomials of all tokens in one matrix product, then a few ``b x b`` squarings per token; the
position-independent coefficients are kept between inference forwards. ComRoPE takes none: its commuting
generators share one eigenbasis per (head, block), ``A_x = Q diag(a_k J) Q^T``, ``A_y = Q diag(c_k J) Q^T`` with
``J`` the 2x2 rotation generator, so ``expm(x A_x + y A_y) = Q R(x a + y c) Q^T`` with ``R`` RoPE's pair rotation
(:func:`commuting_basis`). ``Q`` cancels in ``q . k`` once it is applied to both, so ComRoPE is ``Q^T`` per
channel block followed by the sin / cos rotation of RoPE-Mixed, with frequencies ``a``, ``c`` computed from the
learned matrices in every forward (gradients reach them through the eigendecomposition). Spherical RoPE and
``b = 2`` need no exponential either (closed forms).

Units: the backbones hand integer token coordinates; every module here multiplies them by ``coord_scale``
(``1 / pretraining grid side``, e.g. 1/14 for ViT-B/16 at 224, 1/7 for a Swin window of 7) so generators live in
the papers' normalised units, with the papers' initialisation and learning-rate scale. Relative modes do not
depend on the origin, so the papers' half-token offset is left out.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from .expm import ExpmPolynomial, expm_linear, expm_polynomial
from .grid import Coords, flat_coords
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


def commuting_basis(skew: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real Schur form of skew-symmetric matrices: ``S = Q diag(w_k J) Q^T`` with ``J = [[0, -1], [1, 0]]``.

    From the Hermitian ``i S = V diag(mu) V^H``: its eigenvalues come in pairs ``+-w_k``; for ``w_k >= 0`` the
    eigenvector ``v = a + i b`` gives ``S a = w b`` and ``S b = -w a`` with ``|a| = |b| = 1 / sqrt(2)``, ``a . b = 0``,
    so ``sqrt(2) (a, b)`` are the columns ``2k``, ``2k + 1`` of ``Q``. ``expm(t S) = Q R(t w) Q^T`` then, with ``R``
    the pair rotation of :func:`~ropevit_dense.rope.rotation.apply_rope` (angle ``t w_k`` on pair ``k``).
    Differentiable for distinct ``w_k`` (generic matrices). Each pair of columns could turn within its plane without
    changing ``q . k``; the turn is fixed (largest entry of each eigenvector real and positive) so that ``Q`` is a
    function of ``S``.

    Args:
        skew (Tensor): ``(..., b, b)`` real skew-symmetric, ``b`` even.

    Returns:
        tuple: ``Q^T`` ``(..., b, b)`` (rows ``2k``, ``2k + 1`` span pair ``k``) and ``w`` ``(..., b / 2)``, in float32
        (float64 for float64 input), autocast off.
    """
    b = skew.shape[-1]
    if b % 2 or skew.shape[-2] != b:
        raise ValueError(f"commuting_basis needs square matrices of even side, got {tuple(skew.shape[-2:])}")
    with torch.autocast(device_type=skew.device.type, enabled=False):
        real = torch.promote_types(skew.dtype, torch.float32)
        # float64 whatever the input: a float32 basis is then orthogonal to float32 rounding, and the backward's
        # phase check (below) stays far from its tolerance even under a large loss scale
        mu, v = torch.linalg.eigh(skew.to(torch.complex128) * 1j)  # ascending: -w_{b/2} .. -w_1, w_1 .. w_{b/2}
        half = b // 2
        v = v[..., half:]  # (..., b, b/2): the eigenvectors of +w
        # Fix each eigenvector's free phase (its largest entry made real and positive): the basis is then a
        # function of S alone, so gradients do not depend on the phase eigh happened to return
        with torch.no_grad():
            top = v.abs().argmax(dim=-2, keepdim=True)
        pivot = v.gather(-2, top)
        v = v * (pivot.conj() / pivot.abs()) * math.sqrt(2.0)
        q = torch.stack((v.real, v.imag), dim=-1).flatten(-2)  # columns a_0, b_0, a_1, b_1, ...
        return q.transpose(-1, -2).to(real), mu[..., half:].to(real)


def generator_table(generators: torch.Tensor, coords: torch.Tensor,
                    polynomial: Optional[ExpmPolynomial] = None) -> Union[RopeTable, BlockRopeTable]:
    """Rotations ``expm(x A_x + y A_y)`` of every (head, token, block), in float32 with autocast off.

    Args:
        generators (Tensor): ``(2, heads, num_blocks, b, b)`` skew-symmetric blocks of ``A_x`` then ``A_y``.
        coords (Tensor): ``(N, 2)`` token positions ``(x, y)``.
        polynomial (ExpmPolynomial | None): :func:`generator_polynomial` of ``generators``, when the caller keeps it;
            None computes it.

    Returns:
        RopeTable for ``b = 2`` (angles ``x A_x[1, 0] + y A_y[1, 0]``, the sin / cos path, gradients through
        ``RopeTable.angles``), else BlockRopeTable ``(heads, N, num_blocks, b, b)`` (:func:`~ropevit_dense.rope.expm.
        expm_linear`). float64 generators give float64 tables.
    """
    if generators.ndim != 5 or generators.shape[0] != 2 or generators.shape[-1] != generators.shape[-2]:
        raise ValueError(f"generators must be (2, heads, num_blocks, b, b), got {tuple(generators.shape)}")
    with torch.autocast(device_type=coords.device.type, enabled=False):
        if generators.shape[-1] == 2:
            dtype = torch.promote_types(generators.dtype, torch.float32)
            return rope_table(generators.to(dtype)[..., 1, 0], coords.to(dtype))
        if polynomial is None:
            polynomial = generator_polynomial(generators)
        heads, num_blocks, b = generators.shape[1], generators.shape[2], generators.shape[-1]
        blocks = expm_linear(polynomial, coords)  # (N, heads * num_blocks, b, b)
        return BlockRopeTable(blocks.view(-1, heads, num_blocks, b, b).transpose(0, 1))


def generator_polynomial(generators: torch.Tensor) -> ExpmPolynomial:
    """The position-independent part of :func:`generator_table` (``b > 2``), float32 or float64, autocast off."""
    with torch.autocast(device_type=generators.device.type, enabled=False):
        gen = generators.to(torch.promote_types(generators.dtype, torch.float32))
        return expm_polynomial(gen[0].flatten(0, 1), gen[1].flatten(0, 1))


def _check_blocks(head_dim: int, block_size: int, multiple: int, name: str) -> int:
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"{name}: block_size must be an int >= 2, got {block_size!r}")
    if head_dim % (block_size * multiple):
        need = f"{multiple} x block_size = {multiple * block_size}" if multiple > 1 else f"block_size={block_size}"
        raise ValueError(f"{name} needs head_dim divisible by {need}, got head_dim={head_dim}")
    return head_dim // block_size


class _GeneratorRoPE(Float32State):
    """Shared forward of the generator modes: ``skew_generators()`` in normalised units, coordinates scaled."""

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int, coord_scale: float) -> None:
        super().__init__()
        if not coord_scale > 0:
            raise ValueError(f"coord_scale must be > 0, got {coord_scale}")
        self.head_dim, self.num_heads, self.block_size, self.coord_scale = head_dim, num_heads, block_size, coord_scale

    def skew_generators(self) -> torch.Tensor:
        """``(2, heads, num_blocks, b, b)`` skew-symmetric ``A_x``, ``A_y`` blocks (per normalised unit)."""
        raise NotImplementedError

    def _kept(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, a function of the parameters only. Without gradients (inference) its value is kept for
        the next forward while every parameter stays the same tensor with the same values (its storage, device,
        dtype and version counter, which every in-place update such as an optimizer step or ``load_state_dict``
        advances), so it is computed once, not in every forward."""
        params = list(self.parameters())
        if (torch.is_grad_enabled() and any(p.requires_grad for p in params)) or torch.compiler.is_compiling():
            return compute()
        key = tuple((p.data_ptr(), p.device, p.dtype, p._version) for p in params)
        kept = self.__dict__.setdefault("_kept_values", {})
        if name not in kept or kept[name][0] != key:
            kept[name] = (key, compute())
        return kept[name][1]

    def forward(self, coords: Coords) -> Union[RopeTable, BlockRopeTable]:
        """Table for ``coords`` ``(N, 2)`` (token units, or a grid's), built from the current parameters (their
        position-independent part kept in inference, see :meth:`_kept`)."""
        generators = self.skew_generators() * self.coord_scale
        polynomial = None if self.block_size == 2 else self._kept(
            "polynomial", lambda: generator_polynomial(generators))
        return generator_table(generators, flat_coords(coords), polynomial)

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


class _ComRoPE(_GeneratorRoPE):
    """ComRoPE's forward: the common eigenbasis of each block's commuting generators, then RoPE's sin / cos rotation
    with the frequencies that basis gives (module docstring). ``b = 2`` blocks are rotations already."""

    def base_skew(self) -> torch.Tensor:
        """``(heads, num_blocks, b, b)``: the skew-symmetric ``S_j = P_j - P_j^T`` both axes' generators scale."""
        return self.generators - self.generators.transpose(-1, -2)

    def axis_rates(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frequencies of x and of y, ``(heads, num_blocks, b / 2)`` each, from the eigen-frequencies ``w`` of
        :meth:`base_skew` (per normalised unit)."""
        raise NotImplementedError

    def _eigenbasis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`commuting_basis` of :meth:`base_skew`, kept in inference (:meth:`_kept`)."""
        return self._kept("eigenbasis", lambda: commuting_basis(self.base_skew()))

    def forward(self, coords: Coords) -> Union[RopeTable, BlockRopeTable]:
        """Table for ``coords`` ``(N, 2)`` (token units, or a grid's): ``Q^T`` blocks and the pair angles. Odd block
        sizes (one unrotated axis per block) take the matrix-exponential path of LieRE."""
        if self.block_size == 2 or self.block_size % 2:
            return super().forward(coords)
        basis, w = self._eigenbasis()
        fx, fy = self.axis_rates(w)
        freqs = torch.stack((fx, fy)).flatten(-2) * self.coord_scale  # (2, heads, head_dim / 2)
        return rope_table(freqs, coords)._replace(basis=basis)


class ComRoPEAP(_ComRoPE):
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

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int = 8, coord_scale: float = 1.0,
                 init_std: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(head_dim=head_dim, num_heads=num_heads, block_size=block_size, coord_scale=coord_scale)
        nb = _check_blocks(head_dim, block_size, 2, "ComRoPE-AP")
        self.generators = nn.Parameter(torch.randn(num_heads, nb, block_size, block_size, generator=generator)
                                       * init_std)

    def _axis_masks(self, like: torch.Tensor) -> torch.Tensor:
        axis = torch.arange(self.generators.shape[1], device=like.device) % 2  # block j follows x (even) or y (odd)
        return torch.stack((axis == 0, axis == 1)).to(like.dtype)  # (2, num_blocks)

    def skew_generators(self) -> torch.Tensor:
        skew = self.base_skew()
        return skew.unsqueeze(0) * self._axis_masks(skew).view(2, 1, -1, 1, 1)

    def axis_rates(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks = self._axis_masks(w)[..., None]  # (2, num_blocks, 1)
        return w * masks[0], w * masks[1]


class ComRoPELD(_ComRoPE):
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

    def __init__(self, *, head_dim: int, num_heads: int, block_size: int = 8, coord_scale: float = 1.0,
                 init_std: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(head_dim=head_dim, num_heads=num_heads, block_size=block_size, coord_scale=coord_scale)
        nb = _check_blocks(head_dim, block_size, 1, "ComRoPE-LD")
        self.generators = nn.Parameter(torch.randn(num_heads, nb, block_size, block_size, generator=generator)
                                       * init_std)
        self.axis_scales = nn.Parameter(torch.randn(2, nb, generator=generator))

    def skew_generators(self) -> torch.Tensor:
        return self.base_skew().unsqueeze(0) * self.axis_scales.view(2, 1, -1, 1, 1)

    def axis_rates(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales = self.axis_scales[..., None]  # (2, num_blocks, 1): theta_{x,j}, theta_{y,j}
        return w * scales[0], w * scales[1]
