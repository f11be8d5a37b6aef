"""RoPE-Swin backbone for dense prediction.

Swin Transformer (Liu et al., ICCV 2021) with the 2D RoPE window attention of RoPE-Swin (Heo et al., ECCV 2024,
https://github.com/naver-ai/rope-vit): window-local RoPE coordinates, axial (fixed, theta 50) or mixed (learnable,
theta 10) frequencies, and an optional relative position bias (RPB); the other position modes of
:mod:`ropevit_dense.rope` (spherical, LieRE, ComRoPE) plug in the same way, per attention layer. Parameter names
follow the Microsoft / naver checkpoints, so they load with a light renaming (see :mod:`ropevit_dense.checkpoints`).

Any input size works: the image is padded to the patch size, each stage pads to the window size and masks the
padded keys, patch merging pads odd sizes. RoPE extrapolates inside windows larger than the pretraining one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import (
    Attention,
    PatchEmbed,
    check_window_padding,
    init_linear_and_norm,
    pad_to_multiple,
    valid_windows,
    window_partition,
    window_unpartition,
)
from ..rope import (
    PAIR_ROPE_TYPES,
    ROPE_PARAMETER_NAMES,
    AxialRoPE,
    BlockRopeTable,
    GridCoords,
    RopeArg,
    RopeTable,
    build_layer_rope,
    build_shared_rope,
    check_rope_options,
    grid_axes,
    rope_settings,
)

SWIN_PRESETS: dict[str, dict] = {
    "t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}
MASK_VALUE = -100.0  # as the Swin reference: finite, so fully masked padded rows stay NaN-free


def relative_position_index(window: int) -> torch.Tensor:
    """``(w*w, w*w)`` index into a ``((2w-1)^2, heads)`` relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowAttention(Attention):
    """Window self-attention with optional RPB; RoPE tables are handed in by the stage.

    Args:
        dim (int): channels.
        num_heads (int): heads.
        window_size (int): window side.
        qkv_bias (bool): qkv bias.
        use_rpb (bool): learnable relative position bias table.
        rope (nn.Module | None): this block's own learnable RoPE (every mode but axial), if any.
    """

    def __init__(
        self, *, dim: int, num_heads: int, window_size: int, qkv_bias: bool, use_rpb: bool, rope: Optional[nn.Module]
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias)
        self.window_size = window_size
        self.rope = rope
        if use_rpb:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        else:
            self.relative_position_bias_table = None

    def position_bias(self) -> Optional[torch.Tensor]:
        """``(heads, w*w, w*w)`` relative position bias, or None."""
        if self.relative_position_bias_table is None:
            return None
        n = self.window_size ** 2
        return self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)


class SwinBlock(nn.Module):
    """Swin block: (shifted) window attention and MLP, pre-norm, on ``(B, H, W, C)`` maps.

    ``always_shift`` applies the cyclic shift even when the whole map fits in one window (as the dense Swin of
    mmdet / detectron2 / Mask2Former); otherwise such a map is attended without shift, as one window.
    """

    def __init__(
        self, *, dim: int, num_heads: int, window_size: int, shift: bool, mlp_ratio: float, qkv_bias: bool,
        drop_path: float, use_rpb: bool, rope: Optional[nn.Module], always_shift: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2 if shift else 0
        self.always_shift = always_shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, num_heads=num_heads, window_size=window_size, qkv_bias=qkv_bias,
                                    use_rpb=use_rpb, rope=rope)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def shift_for(self, hw: tuple[int, int]) -> int:
        """The cyclic shift this block applies to an ``hw`` map."""
        if self.always_shift or hw[0] > self.window_size or hw[1] > self.window_size:
            return self.shift_size
        return 0  # one window holds the whole map: nothing to shift

    def forward(self, x: torch.Tensor, rope: Optional[RopeArg],
                masks: dict[int, Optional[torch.Tensor]]) -> torch.Tensor:
        """``x`` ``(B, H, W, C)``; ``masks`` maps a shift to its additive ``(nW, 1, w*w, w*w)`` mask."""
        B, H, W, C = x.shape
        w = self.window_size
        shift = self.shift_for((H, W))
        y = pad_to_multiple(self.norm1(x), w)
        Hp, Wp = y.shape[1:3]
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(y, w)
        bias = self.attn.position_bias()
        mask = masks[shift]
        if mask is not None:
            mask = mask.repeat(B, 1, 1, 1)
            bias = mask if bias is None else mask + bias.unsqueeze(0)
        elif bias is not None:
            bias = bias.unsqueeze(0)
        y = window_unpartition(self.attn(windows, rope, attn_mask=bias), w, (Hp, Wp))
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :H, :W])
        return x + self.drop_path(self.mlp(self.norm2(x)))


def window_masks(hw: tuple[int, int], window: int, shift: int, device: torch.device, *, mask_padding: bool = True
                 ) -> Optional[torch.Tensor]:
    """Additive mask ``(nW, 1, w*w, w*w)`` for one stage layout: shifted-window regions and (with
    ``mask_padding``) padded keys.

    Returns None when no token needs masking (no shift, and no padding or padding left visible).
    """
    H, W = hw
    Hp, Wp = H + (-H) % window, W + (-W) % window
    if not shift and ((Hp, Wp) == (H, W) or not mask_padding):
        return None
    region = torch.zeros(1, Hp, Wp, 1, device=device)
    if shift:
        cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        label = 0
        for hs in cuts:
            for ws in cuts:
                region[:, hs, ws] = label
                label += 1
    region = window_partition(region, window).squeeze(-1)  # (nW, N)
    mask = region[:, None, :] != region[:, :, None]
    if mask_padding:
        mask = mask | ~valid_windows(hw, window, shift, device=device)[:, None, :]
    return (mask.float() * MASK_VALUE).unsqueeze(1)


class PatchMerging(nn.Module):
    """2x2 patch merging (Swin order: (0,0), (1,0), (0,1), (1,1)), zero-padding odd sizes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks of one resolution, then (optionally) patch merging."""

    def __init__(self, *, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: Sequence[float], use_rpb: bool, rope_type: Optional[str],
                 rope_theta: Optional[float], downsample: bool, rope_block_size: Optional[int] = None,
                 rope_coord_scale: float = 1.0, always_shift: bool = False) -> None:
        super().__init__()
        head_dim = dim // num_heads
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim=dim, num_heads=num_heads, window_size=window_size, shift=i % 2 == 1, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, drop_path=drop_path[i], use_rpb=use_rpb, always_shift=always_shift,
                rope=build_layer_rope(rope_type, head_dim=head_dim, num_heads=num_heads, theta=rope_theta,
                                      block_size=rope_block_size, coord_scale=rope_coord_scale),
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None


class RoPESwin(nn.Module):
    """Swin Transformer backbone with 2D RoPE window attention.

    Args:
        embed_dim (int): channels of stage 0. Default: 96.
        depths (Sequence[int]): blocks per stage. Default: (2, 2, 6, 2).
        num_heads (Sequence[int]): heads per stage. Default: (3, 6, 12, 24).
        patch_size (int): patch side. Default: 4.
        in_chans (int): image channels. Default: 3.
        window_size (int): attention window side. Default: 7 (the pretraining window).
        pretrain_window_size (int): window of the pretrained weights; reference of ``'interpolate'``. Default: 7.
        mlp_ratio (float): MLP expansion. Default: 4.
        qkv_bias (bool): qkv bias. Default: True.
        drop_path_rate (float): stochastic depth, linearly increasing. Default: 0.
        rope_type (str | None): ``'axial'``, ``'mixed'``, ``'spherical'``, ``'liere'``, ``'comrope-ap'``,
            ``'comrope-ld'`` or None; see :mod:`ropevit_dense.rope`. Default: ``'mixed'``.
        rope_theta (float | None): None picks the reference value (50 axial, 10 mixed and spherical); must stay
            None for LieRE / ComRoPE.
        rope_block_size (int | None): generator block side of LieRE / ComRoPE; None picks 8. Their positions
            are measured in pretraining windows (``coord_scale = 1 / pretrain_window_size``).
        rope_position (str): ``'extrapolate'`` (window-local integer coordinates) or ``'interpolate'``
            (mapped onto the pretraining window). Default: ``'extrapolate'``.
        use_rpb (bool): relative position bias. Default: False.
        window_padding (str): ``'mask'`` hides the zero tokens that pad a stage to whole windows as keys, and a
            stage that fits in one window is attended unshifted; ``'zero'`` lets padded tokens take part as keys
            and always applies the shifted-window roll, as the Swin of mmdet, detectron2 and Mask2Former.
            Default: ``'mask'``.
        out_indices (Sequence[int]): stages returned (each after its own LayerNorm ``norm{i}``). Default: all.
        frozen_stages (int): -1 trains all; 0 freezes the patch embedding; k > 0 also stages ``0..k-1``.
        with_cp (bool): activation checkpointing of the blocks during training. Default: False.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        patch_size: int = 4,
        in_chans: int = 3,
        window_size: int = 7,
        pretrain_window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        rope_type: Optional[Literal["axial", "mixed", "spherical", "liere", "comrope-ap", "comrope-ld"]] = "mixed",
        rope_theta: Optional[float] = None,
        rope_block_size: Optional[int] = None,
        rope_position: Literal["extrapolate", "interpolate"] = "extrapolate",
        use_rpb: bool = False,
        window_padding: Literal["mask", "zero"] = "mask",
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        check_rope_options(rope_type, rope_position)
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same length")
        if not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"window_size must be an int >= 1, got {window_size!r}")
        check_window_padding(window_padding)
        num_stages = len(depths)
        dims = [embed_dim * 2 ** i for i in range(num_stages)]
        for d, h in zip(dims, num_heads):
            if d % h or (rope_type in PAIR_ROPE_TYPES and (d // h) % 4):
                raise ValueError(f"stage dim {d} with {h} heads: head_dim must be an integer divisible by 4")
        out_indices = tuple(range(num_stages)) if out_indices is None else tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not 0 <= i < num_stages]
        if bad or not out_indices:
            raise ValueError(f"out_indices {list(out_indices)} must be non-empty and within 0..{num_stages - 1}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be in -1..{num_stages}, got {frozen_stages}")

        self.num_stages, self.window_size, self.pretrain_window_size = num_stages, window_size, pretrain_window_size
        self.rope_type, self.rope_position, self.window_padding = rope_type, rope_position, window_padding
        self.out_indices, self.frozen_stages, self.with_cp = out_indices, frozen_stages, with_cp
        self.num_features = dims
        theta, block_size = rope_settings(rope_type, "swin", theta=rope_theta, block_size=rope_block_size)

        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, norm=True)
        self.head_dims = head_dims = sorted({d // h for d, h in zip(dims, num_heads)})
        bad = [hd for hd in head_dims if rope_type == "liere" and hd % block_size]
        if bad:
            raise ValueError(f"LieRE needs head_dim divisible by block_size={block_size} in every stage, "
                             f"got head_dim={bad[0]}")
        # Fixed axial frequencies depend only on head_dim: one module per head_dim, one table per forward. LieRE's
        # generators are shared by every block and head: one module for the widest head, whose generator block j
        # also serves channel block j of narrower heads (all Swin presets have one head width), one table per forward.
        if rope_type == "axial":
            self.rope = nn.ModuleDict({str(hd): AxialRoPE(head_dim=hd, theta=theta) for hd in head_dims})
        else:
            self.rope = build_shared_rope(rope_type, head_dim=head_dims[-1], theta=theta, block_size=block_size,
                                          coord_scale=1.0 / pretrain_window_size)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList(
            SwinStage(
                dim=dims[i], depth=depths[i], num_heads=num_heads[i], window_size=window_size, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, drop_path=dpr[sum(depths[:i]): sum(depths[: i + 1])], use_rpb=use_rpb,
                rope_type=rope_type, rope_theta=theta, downsample=i < num_stages - 1, rope_block_size=block_size,
                rope_coord_scale=1.0 / pretrain_window_size, always_shift=window_padding == "zero",
            )
            for i in range(num_stages)
        )
        for i in out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(dims[i]))
        self.init_weights()
        self._freeze()

    def init_weights(self) -> None:
        """Random init for training from scratch (pretrained weights are loaded by :mod:`ropevit_dense.checkpoints`)."""
        self.apply(init_linear_and_norm)
        for m in self.modules():
            if isinstance(m, WindowAttention) and m.relative_position_bias_table is not None:
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    def _freeze(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, *self.layers[: self.frozen_stages]]
        frozen += [getattr(self, f"norm{i}") for i in range(self.frozen_stages) if hasattr(self, f"norm{i}")]
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> RoPESwin:
        super().train(mode)
        self._freeze()
        return self

    def no_weight_decay_keywords(self) -> set[str]:
        """Name fragments of parameters that take no weight decay."""
        return {f"rope.{n}" for n in ROPE_PARAMETER_NAMES} | {"relative_position_bias_table"}

    def _window_coords(self, device: torch.device) -> GridCoords:
        w, ref = self.window_size, self.pretrain_window_size
        return grid_axes(w, w, mode=self.rope_position, ref_size=(ref, ref), device=device)

    def _shared_tables(self, coords: GridCoords) -> dict[str, Union[RopeTable, BlockRopeTable]]:
        """The tables of a shared RoPE module (axial, LieRE) for each head width, built once per forward."""
        if self.rope is None:
            return {}
        if isinstance(self.rope, nn.ModuleDict):
            return {hd: m(coords) for hd, m in self.rope.items()}
        table = self.rope(coords)  # LieRE: (1, w*w, blocks of the widest head, b, b)
        b = self.rope.block_size
        return {str(hd): BlockRopeTable(table.blocks[:, :, : hd // b]) for hd in self.head_dims}

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw outputs of every stage (before patch merging and before the output norms), ``(B, H_i, W_i, C_i)``."""
        x = self.patch_embed(x)
        coords = self._window_coords(x.device)
        shared = self._shared_tables(coords)
        outs = []
        for stage in self.layers:
            hw = x.shape[1:3]
            masks = {s: window_masks(hw, self.window_size, s, x.device, mask_padding=self.window_padding == "mask")
                     for s in {blk.shift_for(hw) for blk in stage.blocks}}
            for blk in stage.blocks:
                if blk.attn.rope is not None:  # built inside the attention call, freed before the MLP
                    table = functools.partial(blk.attn.rope, coords)
                else:
                    table = shared.get(str(blk.attn.head_dim))
                if self.with_cp and self.training and x.requires_grad:
                    x = checkpoint(blk, x, table, masks, use_reentrant=False)
                else:
                    x = blk(x, table, masks)
            outs.append(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return outs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Images ``(B, C, H, W)`` → NCHW maps of the ``out_indices`` stages (strides 4, 8, 16, 32)."""
        stages = self.stage_outputs(x)
        return tuple(getattr(self, f"norm{i}")(stages[i]).permute(0, 3, 1, 2).contiguous() for i in self.out_indices)
