"""RoPE modules: frequencies (or generators) as module state, tables built for the coordinates they are handed.

Position modes (``rope_type``):

* ``'axial'``, ``'mixed'``: RoPE-ViT / RoPE-Swin (Heo et al., ECCV 2024), 2x2 rotations of channel pairs.
* ``'spherical'``: Spherical RoPE (:mod:`ropevit_dense.rope.spherical`), 3x3 rotations, not strictly relative.
* ``'liere'``: LieRE, ``'comrope-ap'`` / ``'comrope-ld'``: ComRoPE (:mod:`ropevit_dense.rope.generators`),
  matrix exponentials of learned skew-symmetric generators in ``b x b`` blocks (``rope_block_size``, default 8).
  ``'liere'`` has one set of generators for the whole backbone, shared by every attention layer and head (the LieRE
  reference code's default, ``rotary_embedding_per_layer=False``, ``rotary_embedding_per_head=False``), so its
  rotations are computed once per forward and layout; ``'liere-per-layer'`` gives every attention layer and head
  its own generators (both of the reference's options on).

The modes of :data:`SHARED_ROPE_TYPES` (axial, LieRE) have one module in the backbone (``backbone.rope``) whose
table serves every block; the others learn their parameters per attention layer (``blk.attn.rope``). Their names
are listed in :data:`ROPE_PARAMETER_NAMES` so weight-decay and learning-rate rules can match them
(:func:`is_rope_parameter`).
"""

from __future__ import annotations

from typing import Literal, Optional

from torch import nn

from .frequencies import axial_frequencies, mixed_frequencies
from .generators import ComRoPEAP, ComRoPELD, LieRE
from .grid import POSITION_MODES, Coords
from .precision import Float32State
from .rotation import RopeTable, rope_table
from .spherical import SphericalRoPE

RopeType = Literal["axial", "mixed", "spherical", "liere", "liere-per-layer", "comrope-ap", "comrope-ld"]
ROPE_TYPES = ("axial", "mixed", "spherical", "liere", "liere-per-layer", "comrope-ap", "comrope-ld")
PAIR_ROPE_TYPES = ("axial", "mixed")  # the naver RoPE-ViT modes: channel pairs, head_dim divisible by 4
# b x b generator blocks (rope_block_size)
GENERATOR_ROPE_TYPES = ("liere", "liere-per-layer", "comrope-ap", "comrope-ld")
SHARED_ROPE_TYPES = ("axial", "liere")  # one module per backbone, one table per grid / window layout and forward
DEFAULT_BLOCK_SIZE = 8
# theta per (rope type, backbone family), as the RoPE-ViT reference and its released checkpoints; Spherical RoPE
# starts from RoPE-Mixed's frequencies.
DEFAULT_THETA = {("axial", "vit"): 100.0, ("mixed", "vit"): 10.0, ("axial", "swin"): 50.0, ("mixed", "swin"): 10.0,
                 ("spherical", "vit"): 10.0, ("spherical", "swin"): 10.0}
# Names of learned RoPE parameters inside a ``rope`` module (``blocks.3.attn.rope.generators``).
ROPE_PARAMETER_NAMES = ("freqs", "generators", "axis_scales")


class AxialRoPE(Float32State):
    """Axial 2D RoPE: fixed frequencies, shared by every head and every block that uses it.

    Args:
        head_dim (int): channels per head (divisible by 4).
        theta (float): frequency base. Default: 100 (RoPE-ViT; RoPE-Swin uses 50).
        scale (float): factor on every frequency (``2 * pi`` for DINOv3's periods). Default: 1.
        y_first (bool): first half of the pairs on y, second on x (EVA-02, DINOv3). Default: False.
    """

    def __init__(self, *, head_dim: int, theta: float = 100.0, scale: float = 1.0, y_first: bool = False) -> None:
        super().__init__()
        self.head_dim, self.theta, self.scale, self.y_first = head_dim, theta, scale, y_first
        # derived, not learned: kept out of checkpoints
        self.register_buffer("freqs", axial_frequencies(head_dim, theta, scale=scale, y_first=y_first),
                             persistent=False)

    def forward(self, coords: Coords) -> RopeTable:
        """Table for ``coords`` ``(N, 2)`` (or a grid's :class:`~ropevit_dense.rope.grid.GridCoords`) → sin / cos
        ``(1, N, head_dim // 2)``."""
        return rope_table(self.freqs, coords)

    def extra_repr(self) -> str:
        extra = (f", scale={self.scale:g}" if self.scale != 1.0 else "") + (", y_first=True" if self.y_first else "")
        return f"head_dim={self.head_dim}, theta={self.theta}{extra}"


class MixedRoPE(Float32State):
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

    def forward(self, coords: Coords) -> RopeTable:
        """Table for ``coords`` ``(N, 2)`` (or a grid's :class:`~ropevit_dense.rope.grid.GridCoords`) → sin / cos
        ``(num_heads, N, head_dim // 2)``."""
        return rope_table(self.freqs, coords)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_heads={self.num_heads}, theta={self.theta}"


def check_rope_options(rope_type: Optional[str], rope_position: str = "extrapolate") -> None:
    """Raise ``ValueError`` naming the problem for an unknown ``rope_type`` or ``rope_position``."""
    if rope_type is not None and rope_type not in ROPE_TYPES:
        raise ValueError(f"unknown RoPE mode rope_type='{rope_type}'; expected one of {ROPE_TYPES} or None")
    if rope_position not in POSITION_MODES:
        raise ValueError(f"unknown rope_position '{rope_position}'; expected one of {POSITION_MODES}")


def rope_settings(rope_type: Optional[str], family: str, *, theta: Optional[float], block_size: Optional[int]
                  ) -> tuple[Optional[float], Optional[int]]:
    """Defaults and checks of the mode-specific knobs: ``(theta, block_size)`` for ``rope_type``.

    Args:
        rope_type (str | None): position mode.
        family (str): ``'vit'`` or ``'swin'`` (the default theta differs).
        theta (float | None): ``rope_theta``; None picks the reference value. Generator modes have no theta.
        block_size (int | None): ``rope_block_size``; None picks 8. Only generator modes have one.

    Returns:
        tuple: the resolved ``(theta, block_size)``.
    """
    if block_size is not None and rope_type not in GENERATOR_ROPE_TYPES:
        raise ValueError(f"rope_block_size applies to rope_type in {GENERATOR_ROPE_TYPES} only, "
                         f"got rope_block_size={block_size} with rope_type={rope_type!r}")
    if rope_type in GENERATOR_ROPE_TYPES:
        if theta is not None:
            raise ValueError(f"rope_theta has no meaning for rope_type='{rope_type}' (learned generators, no "
                             f"frequency base); leave it None")
        return None, DEFAULT_BLOCK_SIZE if block_size is None else block_size
    return (theta if theta is not None else DEFAULT_THETA.get((rope_type, family))), None


def build_layer_rope(rope_type: Optional[str], *, head_dim: int, num_heads: int, theta: Optional[float],
                     block_size: Optional[int], coord_scale: float) -> Optional[nn.Module]:
    """The RoPE module one attention layer owns (``blk.attn.rope``), or None (:data:`SHARED_ROPE_TYPES`: the
    backbone's, see :func:`build_shared_rope`; no RoPE).

    Args:
        rope_type (str | None): position mode.
        head_dim (int): channels per head.
        num_heads (int): heads.
        theta (float | None): frequency base of mixed / spherical (from :func:`rope_settings`).
        block_size (int | None): generator block side of LieRE / ComRoPE (from :func:`rope_settings`).
        coord_scale (float): normalised units per token step for LieRE / ComRoPE (``1 / pretraining grid side``).
    """
    if rope_type == "mixed":
        return MixedRoPE(head_dim=head_dim, num_heads=num_heads, theta=theta)
    if rope_type == "spherical":
        return SphericalRoPE(head_dim=head_dim, num_heads=num_heads, theta=theta)
    generator_modules = {"liere-per-layer": LieRE, "comrope-ap": ComRoPEAP, "comrope-ld": ComRoPELD}
    if rope_type in generator_modules:
        return generator_modules[rope_type](head_dim=head_dim, num_heads=num_heads, block_size=block_size,
                                            coord_scale=coord_scale)
    return None


def build_shared_rope(rope_type: Optional[str], *, head_dim: int, theta: Optional[float], block_size: Optional[int],
                      coord_scale: float, **axial_args) -> Optional[nn.Module]:
    """The one RoPE module of a backbone whose mode shares it across blocks (:data:`SHARED_ROPE_TYPES`), or None.

    Args:
        rope_type (str | None): position mode.
        head_dim (int): channels per head (for a backbone with several head widths, the largest: LieRE's generator
            block ``j`` then serves channel block ``j`` of every head).
        theta (float | None): axial frequency base.
        block_size (int | None): LieRE generator block side.
        coord_scale (float): LieRE's normalised units per token step.
        **axial_args: further :class:`AxialRoPE` arguments (a family's ``scale`` / ``y_first``).
    """
    if rope_type == "axial":
        return AxialRoPE(head_dim=head_dim, theta=theta, **axial_args)
    if rope_type == "liere":  # one generator set for all heads: rotation blocks (1, N, nb, b, b) broadcast over heads
        return LieRE(head_dim=head_dim, num_heads=1, block_size=block_size, coord_scale=coord_scale)
    return None


def is_rope_parameter(name: str) -> bool:
    """True for a learned RoPE parameter (``...rope.freqs``, ``...rope.generators``, ``...rope.axis_scales``)."""
    parts = name.rsplit(".", 2)
    return len(parts) >= 2 and parts[-2] == "rope" and parts[-1] in ROPE_PARAMETER_NAMES
