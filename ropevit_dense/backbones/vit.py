"""RoPE-ViT backbone for dense prediction.

The DeiT-III LayerScale ViT of the RoPE-ViT checkpoints (Heo et al., "Rotary Position Embedding for Vision
Transformer", ECCV 2024, https://github.com/naver-ai/rope-vit), arranged as a ViTDet backbone (Li et al., "Exploring
Plain Vision Transformer Backbones for Object Detection", ECCV 2022): window attention in most blocks, global
attention in a few, at any input size.

RoPE positions are the integer coordinates of the actual token grid (extrapolation) by default. Window blocks use
window-local coordinates, which gives exactly the attention of global coordinates for the relative modes (axial,
mixed, ComRoPE: they only see position differences); for Spherical RoPE and LieRE every window sees the same local
frame.

Other pretrained RoPE ViTs (DINOv3, EVA-02) are the same backbone with another ``family``
(:mod:`ropevit_dense.backbones.families`): register tokens, SwiGLU MLP, key-bias-free qkv, their RoPE schedule and
coordinate rule, all read from the family record.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Optional, Union

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import (
    Attention,
    PatchEmbed,
    QVBiasLinear,
    check_window_padding,
    init_linear_and_norm,
    pad_to_multiple,
    padding_key_mask,
    window_partition,
    window_unpartition,
)
from ..rope import (
    PAIR_ROPE_TYPES,
    BlockRopeTable,
    FactoredRopeTable,
    GridCoords,
    MixedRoPE,
    RopeArg,
    RopeTable,
    build_layer_rope,
    build_shared_rope,
    check_rope_options,
    factored_tables,
    grid_axes,
    is_rope_parameter,
    rope_settings,
)
from .families import ViTFamily, resolve_family

VIT_PRESETS: dict[str, dict[str, int]] = {
    "s": dict(embed_dim=384, depth=12, num_heads=6),
    "b": dict(embed_dim=768, depth=12, num_heads=12),
    "l": dict(embed_dim=1024, depth=24, num_heads=16),
}


def _rel_pos_size(enabled: bool, window: int, global_side: int) -> Optional[tuple[int, int]]:
    """Grid of one block's relative position tables: its window, or the reference grid for global blocks."""
    if not enabled:
        return None
    side = window if window else global_side
    return (side, side)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale, global or windowed.

    Args:
        dim (int): channels.
        num_heads (int): heads.
        mlp_ratio (float): hidden / input channels of the MLP.
        qkv_bias (str | bool): ``'qkv'`` (or True), ``'qv'`` (no key bias) or ``'none'`` (or False).
        init_values (float | None): LayerScale init (``gamma_1`` / ``gamma_2``); None for no LayerScale.
        drop_path (float): stochastic depth rate.
        window_size (int): 0 for global attention, else the side of the attention windows in tokens.
        rope (nn.Module | None): this block's own learnable RoPE (every mode but axial), if any.
        family (ViTFamily | None): MLP kind and norm eps; None for the RoPE-ViT family.
        rel_pos_size (tuple[int, int] | None): grid of this block's decomposed relative position tables (the window
            in window blocks), or None for none.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: Union[bool, str],
        init_values: Optional[float],
        drop_path: float,
        window_size: int,
        rope: Optional[nn.Module],
        family: Optional[ViTFamily] = None,
        rel_pos_size: Optional[tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        family = resolve_family("rope-vit" if family is None else family)
        qkv_bias = {True: "qkv", False: "none"}.get(qkv_bias, qkv_bias)
        if qkv_bias not in ("qkv", "qv", "none"):
            raise ValueError(f"qkv_bias must be 'qkv', 'qv', 'none' or a bool, got {qkv_bias!r}")
        self.window_size = window_size
        self.norm1 = family.norm_layer()(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias != "none", rel_pos_size=rel_pos_size)
        if qkv_bias == "qv":
            self.attn.qkv = QVBiasLinear(dim, dim * 3)  # queries and values biased, keys not (EVA-02, DINOv3)
        self.attn.rope = rope
        self.norm2 = family.norm_layer()(dim)
        self.mlp = family.build_mlp(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def _attend(self, x: torch.Tensor, hw: tuple[int, int], rope: Optional[RopeArg],
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        if not self.window_size:
            return self.attn(x, rope, hw=hw)
        B, _, C = x.shape
        w = self.window_size
        spatial = pad_to_multiple(x.view(B, hw[0], hw[1], C), w)
        padded_hw = spatial.shape[1:3]
        windows = self.attn(window_partition(spatial, w), rope, attn_mask=mask, hw=(w, w))
        spatial = window_unpartition(windows, w, padded_hw)[:, : hw[0], : hw[1]]
        return spatial.reshape(B, -1, C)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], rope: Optional[RopeArg],
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Args: ``x`` ``(B, N, C)`` (prefix tokens first, then the ``hw`` grid row-major); ``rope`` this block's
        table; ``mask`` the padded-key mask of window blocks (:func:`padding_key_mask`; None lets zero-padded
        tokens attend as keys). Returns ``(B, N, C)``."""
        y = self._attend(self.norm1(x), hw, rope, mask)
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


class RoPEViT(nn.Module):
    """Plain ViT with 2D RoPE (axial, mixed, spherical, LieRE, ComRoPE), optional APE, and ViTDet windows.

    Arguments marked *family* default to the value of ``family`` (:mod:`ropevit_dense.backbones.families`).

    Args:
        family (str | ViTFamily | dict): ``'rope-vit'`` (default), ``'dinov3'``, ``'dinov3-plus'``, ``'eva02'``, a
            :class:`ViTFamily`, or ``dict(base='dinov3', out_norm=False, ...)``.
        embed_dim (int): channels. Default: 768.
        depth (int): blocks. Default: 12.
        num_heads (int): heads. Default: 12.
        patch_size (int | None): patch side (*family*: 16, EVA-02 14).
        in_chans (int): image channels. Default: 3.
        pretrain_img_size (int | None): image side of pretraining; sets the APE grid and the reference grid of the
            position conventions (*family*: 224, DINOv3 256).
        mlp_ratio (float | None): MLP expansion (*family*: 4, EVA-02 8/3).
        qkv_bias (bool | None): qkv bias; True means the family's kind (all three, or queries and values only for
            DINOv3 / EVA-02, whose key bias is held at zero) (*family*; timm's non-``qkvb`` DINOv3 has none).
        init_values (float | None | str): LayerScale init; None disables LayerScale (*family*: ``'family'``, i.e.
            1e-5, none for EVA-02).
        drop_path_rate (float): stochastic depth, linearly increasing over blocks. Default: 0.
        rope_type (str | None): ``'axial'``, ``'mixed'``, ``'spherical'``, ``'liere'``, ``'comrope-ap'``,
            ``'comrope-ld'`` or None (no RoPE); see :mod:`ropevit_dense.rope` (*family*: ``'family'``, i.e.
            ``'mixed'``, ``'axial'`` for DINOv3 / EVA-02 with their own frequency schedules).
        rope_theta (float | None): frequency base of axial / mixed / spherical; None picks the family's value or the
            reference one (100 axial, 10 mixed and spherical). Must stay None for LieRE / ComRoPE.
        rope_block_size (int | None): generator block side of LieRE / ComRoPE (``head_dim`` = dense LieRE); None
            picks 8. Their positions are measured in pretraining grids (``coord_scale = 1 / grid side``).
        rope_position (str | None): ``'extrapolate'`` (the step of the pretraining grid continued over the actual
            grid, window-local in window blocks) or ``'interpolate'`` (EVA-02's rule: the grid a block attends over,
            a window or the whole map, mapped onto the pretraining range; DINOv3's normalised coordinates)
            (*family*: ``'extrapolate'``, ``'interpolate'`` for DINOv3 / EVA-02, as pretrained).
        use_ape (bool | None): learnable absolute position embedding, bicubic-resized to each input's grid
            (*family*: False, True for EVA-02).
        ape_antialias (bool): resize the APE with PyTorch's antialiased bicubic (as timm; its cubic kernel uses
            a = -0.5) instead of plain bicubic (a = -0.75, as the naver reference code and detectron2's ViTDet).
            Default: True.
        ape_img_size (int | None): image side whose token grid the APE table is learned at. None keeps the
            pretraining grid and resizes the table to every input's grid in each forward (ViTDet); e.g. 512 holds
            a 32x32 table: a pretrained table is resized to it once when loaded and then learned at that size
            (BEiT / mmseg ViT fine-tuning). Default: None.
        use_rel_pos (bool): ViTDet's decomposed relative position bias in every block (``attn.rel_pos_h`` /
            ``rel_pos_w``, zero-initialised; :mod:`ropevit_dense.layers.rel_pos`). Needs ``use_cls_token=False``.
            Default: False.
        rel_pos_img_size (int): image side the global blocks' relative position tables are sized for
            (``2 * rel_pos_img_size / patch - 1`` rows, resampled linearly for other grids); window blocks' tables
            have ``2 * window - 1`` rows. Default: 1024 (ViTDet).
        use_cls_token (bool | None): carry the cls token (and the family's register tokens) through the blocks
            (dropped from the outputs). None picks True for all-global backbones and False for windowed ones;
            windowed backbones cannot keep them.
        window_size (int): window side in tokens for the non-global blocks; 0 makes every block global.
            Default: 0.
        global_block_indexes (Sequence[int]): blocks with global attention when ``window_size > 0``. Default: ().
        window_padding (str): what window blocks do with the zero tokens that pad the grid to whole windows:
            ``'mask'`` hides them as keys, so a token's output does not depend on how much padding its window got;
            ``'zero'`` lets them take part as keys, as detectron2's ViTDet (and the Swin originals) do.
            Default: ``'mask'``.
        out_indices (Sequence[int]): blocks whose outputs are returned as NCHW maps. Default: last block.
        frozen_stages (int): -1 trains everything; 0 freezes the patch embedding (and APE / cls); k > 0 also
            freezes blocks ``0..k-1``. Default: -1.
        with_cp (bool): activation checkpointing of the blocks during training. Default: False.
    """

    def __init__(
        self,
        *,
        family: Union[str, ViTFamily, Mapping[str, Any]] = "rope-vit",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: Optional[int] = None,
        in_chans: int = 3,
        pretrain_img_size: Optional[int] = None,
        mlp_ratio: Optional[float] = None,
        qkv_bias: Optional[bool] = None,
        init_values: Union[float, None, Literal["family"]] = "family",
        drop_path_rate: float = 0.0,
        rope_type: Optional[Literal["family", "axial", "mixed", "spherical", "liere", "comrope-ap",
                                    "comrope-ld"]] = "family",
        rope_theta: Optional[float] = None,
        rope_block_size: Optional[int] = None,
        rope_position: Optional[Literal["extrapolate", "interpolate"]] = None,
        use_ape: Optional[bool] = None,
        ape_antialias: bool = True,
        ape_img_size: Optional[int] = None,
        use_rel_pos: bool = False,
        rel_pos_img_size: int = 1024,
        use_cls_token: Optional[bool] = None,
        window_size: int = 0,
        global_block_indexes: Sequence[int] = (),
        window_padding: Literal["mask", "zero"] = "mask",
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        family = resolve_family(family)
        patch_size = family.patch_size if patch_size is None else patch_size
        pretrain_img_size = family.pretrain_img_size if pretrain_img_size is None else pretrain_img_size
        mlp_ratio = family.mlp_ratio if mlp_ratio is None else mlp_ratio
        qkv_bias = family.qkv_bias if qkv_bias in (None, True) else "none"
        init_values = family.init_values if init_values == "family" else init_values
        rope_type = family.rope_type if rope_type == "family" else rope_type
        rope_position = family.rope_position if rope_position is None else rope_position
        use_ape = family.use_ape if use_ape is None else use_ape
        check_rope_options(rope_type, rope_position)
        if family.rope_type != "mixed" and rope_type not in (None, family.rope_type):
            raise ValueError(f"family '{family.name}' has {family.rope_type} RoPE (or None for no RoPE); "
                             f"got rope_type={rope_type!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        head_dim = embed_dim // num_heads
        if rope_type in PAIR_ROPE_TYPES and head_dim % 4:
            raise ValueError(f"2D RoPE needs head_dim = embed_dim / num_heads divisible by 4, got {head_dim}")
        if not isinstance(window_size, int) or window_size < 0:
            raise ValueError(f"window_size must be an int >= 0 (0 = all blocks global), got {window_size!r}")
        global_block_indexes = tuple(int(i) for i in global_block_indexes)
        bad = [i for i in global_block_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f"global_block_indexes {bad} out of range for depth={depth} (valid: 0..{depth - 1})")
        out_indices = (depth - 1,) if out_indices is None else tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not 0 <= i < depth]
        if bad or not out_indices:
            raise ValueError(f"out_indices {list(out_indices)} must be non-empty and within 0..{depth - 1}")
        if not -1 <= frozen_stages <= depth:
            raise ValueError(f"frozen_stages must be in -1..{depth}, got {frozen_stages}")
        windowed = window_size > 0 and len(set(global_block_indexes)) < depth
        if use_cls_token is None:
            use_cls_token = not windowed
        if use_cls_token and windowed:
            raise ValueError("a cls token cannot pass through window blocks: set use_cls_token=False "
                             "(ViTDet-style backbones drop it) or window_size=0")
        check_window_padding(window_padding)
        if use_rel_pos and use_cls_token:
            raise ValueError("use_rel_pos (ViTDet's decomposed relative positions) has no entry for a cls token: "
                             "set use_cls_token=False")
        if ape_img_size is not None and (not isinstance(ape_img_size, int) or ape_img_size < patch_size):
            raise ValueError(f"ape_img_size must be None or an image side >= patch_size={patch_size}, "
                             f"got {ape_img_size!r}")
        if use_rel_pos and (not isinstance(rel_pos_img_size, int) or rel_pos_img_size < patch_size):
            raise ValueError(f"rel_pos_img_size must be an image side >= patch_size={patch_size}, "
                             f"got {rel_pos_img_size!r}")

        self.family = family
        self.embed_dim, self.depth, self.num_heads, self.patch_size = embed_dim, depth, num_heads, patch_size
        self.pretrain_grid = (pretrain_img_size // patch_size, pretrain_img_size // patch_size)
        self.rope_type, self.rope_position = rope_type, rope_position
        self.out_indices, self.frozen_stages, self.with_cp = out_indices, frozen_stages, with_cp
        num_registers = family.num_register_tokens if use_cls_token else 0
        self.num_prefix_tokens = int(use_cls_token) + num_registers
        self.ape_antialias, self.window_padding = ape_antialias, window_padding
        side = (ape_img_size if ape_img_size is not None else pretrain_img_size) // patch_size
        self.ape_grid = (side, side)

        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_cls_token else None
        self.register_tokens = nn.Parameter(torch.zeros(1, num_registers, embed_dim)) if num_registers else None
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, embed_dim)) if use_ape else None
        rel_side = rel_pos_img_size // patch_size
        if rope_theta is None and rope_type == family.rope_type:
            rope_theta = family.rope_theta
        theta, block_size = rope_settings(rope_type, "vit", theta=rope_theta, block_size=rope_block_size)
        coord_scale = 1.0 / self.pretrain_grid[0]
        # Axial frequencies are fixed and LieRE's generators are shared by all blocks and heads, so one module (and
        # one table per grid and window layout) serves every block.
        self.rope = build_shared_rope(rope_type, head_dim=head_dim, theta=theta, block_size=block_size,
                                      coord_scale=coord_scale, **family.rope_frequency_args)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, init_values=init_values,
                drop_path=dpr[i], window_size=0 if i in global_block_indexes else window_size,
                rope=build_layer_rope(rope_type, head_dim=head_dim, num_heads=num_heads, theta=theta,
                                      block_size=block_size, coord_scale=coord_scale),
                rel_pos_size=_rel_pos_size(use_rel_pos, 0 if i in global_block_indexes else window_size, rel_side),
                family=family,
            )
            for i in range(depth)
        )
        # the final norm, applied to every output map by families whose dense heads read normalised features (DINOv3)
        self.norm = family.norm_layer()(embed_dim) if family.out_norm else None
        self.init_weights()
        self._freeze()

    # -- initialisation and freezing -------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Random init for training from scratch (pretrained weights are loaded by :mod:`ropevit_dense.checkpoints`)."""
        for m in self.modules():
            init_linear_and_norm(m)
        for p in (self.cls_token, self.register_tokens, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.patch_embed, *self.blocks[: self.frozen_stages]]

    def _freeze(self) -> None:
        if self.frozen_stages < 0:
            return
        for p in (self.cls_token, self.register_tokens, self.pos_embed):
            if p is not None:
                p.requires_grad_(False)
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> RoPEViT:
        super().train(mode)
        self._freeze()  # frozen parts stay in eval mode
        return self

    def no_weight_decay(self) -> set[str]:
        """Parameter names that take no weight decay (position embeddings, RoPE parameters, cls / register tokens)."""
        names = {n for n, _ in self.named_parameters() if is_rope_parameter(n)}
        return names | {n for n in ("cls_token", "register_tokens", "pos_embed") if getattr(self, n) is not None}

    # -- forward -------------------------------------------------------------------------------------------------
    def _abs_pos(self, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embed
        if grid != self.ape_grid:
            pos = pos.reshape(1, *self.ape_grid, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos.float(), size=grid, mode="bicubic", align_corners=False,
                                antialias=self.ape_antialias).to(pos.dtype)
            pos = pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
        return pos

    def _rope_tables(self, grid: tuple[int, int], device: torch.device) -> Iterator[Optional[RopeArg]]:
        """One table per block, for its layout: shared (axial) tables are built once per forward; RoPE-Mixed blocks
        get factored tables (:mod:`ropevit_dense.rope.factored`), computed for all blocks of a layout at once when
        gradients are recorded (the backward pass keeps every block's table anyway), one block at a time otherwise
        (all blocks' tables alive through an inference forward would add about 20% to its peak activation memory at
        224x224, for 1 ms less of table building); any
        other block's own (learned) table is handed over unbuilt, so its attention builds it and frees it before the
        MLP runs. Traced code builds every table in its block (plain tables, see
        :func:`~ropevit_dense.rope.rope_table`)."""
        if self.rope_type is None:
            yield from (None for _ in self.blocks)
            return
        traced = torch.compiler.is_compiling()
        coords: dict[int, GridCoords] = {}
        shared: dict[int, Union[RopeTable, BlockRopeTable]] = {}
        factored: dict[int, Iterator[FactoredRopeTable]] = {}
        for blk in self.blocks:
            w = blk.window_size
            if w not in coords:
                # 'interpolate' (EVA-02's rule) maps whatever a block attends over onto the pretraining grid: each
                # window on its own in window blocks, the whole grid in global blocks; the family's coordinate rule
                # (integer indices, or DINOv3's centred coordinates) says how.
                coords[w] = grid_axes(*((w, w) if w else grid), mode=self.rope_position,
                                      ref_size=self.pretrain_grid, rule=self.family.rope_coords, device=device)
            # tables cover the grid only: attention leaves the first N - rows tokens (cls, registers) unrotated
            if isinstance(blk.attn.rope, MixedRoPE) and not traced:
                if not torch.is_grad_enabled():
                    yield factored_tables([blk.attn.rope.freqs], coords[w])[0]
                    continue
                if w not in factored:
                    freqs = [b.attn.rope.freqs for b in self.blocks if b.window_size == w]
                    factored[w] = iter(factored_tables(freqs, coords[w]))
                yield next(factored[w])
            elif blk.attn.rope is not None:
                yield functools.partial(blk.attn.rope, coords[w])
            else:
                if w not in shared:
                    shared[w] = self.rope(coords[w])
                yield shared[w]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Images ``(B, C, H, W)`` → one ``(B, embed_dim, ceil(H/p), ceil(W/p))`` map per ``out_indices`` entry."""
        x = self.patch_embed(x)
        B, gh, gw, C = x.shape
        x = x.reshape(B, gh * gw, C)
        if self.pos_embed is not None:
            x = x + self._abs_pos((gh, gw))
        prefix = [t.expand(B, -1, -1) for t in (self.cls_token, self.register_tokens) if t is not None]
        if prefix:
            x = torch.cat((*prefix, x), dim=1)
        # one padded-key mask per window size and forward (None where the grid needs no padding, or where padded
        # tokens take part as keys)
        windows = {b.window_size for b in self.blocks if b.window_size} if self.window_padding == "mask" else ()
        masks = {w: padding_key_mask((gh, gw), w, B, device=x.device) for w in windows}
        outs = []
        for i, (blk, table) in enumerate(zip(self.blocks, self._rope_tables((gh, gw), x.device))):
            mask = masks.get(blk.window_size)
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(blk, x, (gh, gw), table, mask, use_reentrant=False)
            else:
                x = blk(x, (gh, gw), table, mask)
            if i in self.out_indices:
                feat = x[:, self.num_prefix_tokens:]
                if self.norm is not None:
                    feat = self.norm(feat)
                outs.append(feat.transpose(1, 2).reshape(B, C, gh, gw).contiguous())
        return tuple(outs)
