"""Pretrained ViT families as data: what a family fixes beyond width and depth, read by :class:`RoPEViT`.

A family is one small frozen record: patch size, prefix (register) tokens, MLP kind, norm placement, the RoPE
frequency schedule and coordinate rule, and the key renames of its published checkpoint layouts. :class:`RoPEViT`
reads it instead of growing one constructor flag per family.

* ``'rope-vit'``: the DeiT-III LayerScale ViT of the RoPE-ViT checkpoints (Heo et al., ECCV 2024,
  https://github.com/naver-ai/rope-vit): RoPE-Mixed on integer token coordinates.
* ``'dinov3'`` / ``'dinov3-plus'``: DINOv3 ViT-S/B/L/16 and ViT-S+/16 (Simeoni et al., 2025,
  https://github.com/facebookresearch/dinov3): 4 register ("storage") tokens, LayerScale, LayerNorm eps 1e-5, no key
  bias, axial RoPE with periods ``100 ** (4k / head_dim)`` on centred coordinates normalised per axis to ``[-1, 1]``;
  S+ has a SwiGLU MLP. Dense outputs take the final norm (DINOv3's ``get_intermediate_layers(norm=True)``).
* ``'eva02'``: EVA-02 B/14 and L/14 (Fang et al., 2023, https://github.com/baaivision/EVA/tree/master/EVA-02): APE
  plus axial RoPE (theta 10000) interpolated onto the 16 x 16 pretraining grid, SwiGLU MLP with a sub-LN, no key
  bias, no LayerScale.

DINOv3's precision: its released models compute RoPE in float32 (``pos_embed_rope_dtype='fp32'``; the class default
is bfloat16) from a ``periods`` buffer that the files store in bfloat16. Here the periods and the sin / cos tables
are float32 always: the stored periods are checked and dropped (:mod:`ropevit_dense.checkpoints.families`), so the
outputs match timm's (float32 periods) and differ from Meta's code by the bfloat16 rounding of the periods (about
2e-4 at most on the output of a random ViT-B/16 at 224 x 224, against activations of about 0.8).

DINOv3 rotates channel ``j`` with ``j + head_dim / 2`` ("rotate-half"); this package rotates interleaved pairs
``(2j, 2j + 1)``. The two are the same rotation after a fixed permutation of each head's query / key channels,
which the checkpoint converter applies to the q / k projection rows (``rotate_half=True`` below), so one rotation
function serves every family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any, Literal, Optional, Union

from timm.layers import Mlp, SwiGLU
from torch import nn


@dataclass(frozen=True)
class CheckpointLayout:
    """How one published checkpoint layout of a family names its tensors.

    Attributes:
        name (str): ``'official'`` or ``'timm'``.
        markers (tuple[str, ...]): substrings of keys that only this layout has (any one identifies it).
        renames (tuple[tuple[str, str], ...]): ``(old, new)`` substring replacements, applied in order, to reach our
            names (separate q / k / v projections are fused by the converter).
        dropped (tuple[str, ...]): substrings of keys that have no place in a dense backbone (pretraining-only
            tensors, derived buffers, classifier heads).
        rotate_half (bool): q / k channels are in the rotate-half order and are permuted to interleaved pairs.
    """

    name: str
    markers: tuple[str, ...]
    renames: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    rotate_half: bool = False


@dataclass(frozen=True)
class ViTFamily:
    """What a pretrained ViT family fixes beyond width, depth and heads.

    Attributes:
        name (str): key in :data:`FAMILIES`.
        patch_size (int): patch side.
        pretrain_img_size (int): image side of pretraining: its token grid sizes the APE and is the reference grid
            of the RoPE position conventions.
        num_register_tokens (int): register tokens carried next to the cls token (dropped from the outputs).
        mlp (str): ``'gelu'`` (fc1 / GELU / fc2) or ``'swiglu'`` (timm's ``SwiGLU``: fc1_g, fc1_x, norm, fc2).
        mlp_ratio (float): hidden width / channels (``int(dim * mlp_ratio)``, as timm).
        mlp_align (int): round the SwiGLU hidden width up to a multiple of this (0: none).
        mlp_norm (bool): a LayerNorm on the SwiGLU hidden activations (EVA-02's sub-LN).
        norm_eps (float): eps of every LayerNorm.
        qkv_bias (str): ``'qkv'`` (all three), ``'qv'`` (no key bias, :class:`~ropevit_dense.layers.QVBiasLinear`)
            or ``'none'``.
        init_values (float | None): LayerScale init (``gamma_1`` / ``gamma_2``), None for no LayerScale.
        use_ape (bool): learnable absolute position embedding.
        rope_type (str | None): the family's pretrained RoPE mode.
        rope_theta (float | None): frequency base of its RoPE (None: the mode's default).
        rope_scale (float): factor on the axial frequencies (``2 * pi`` for DINOv3's periods).
        rope_y_first (bool): the first half of the channel pairs rotates with y.
        rope_coords (str): coordinate rule, ``'index'`` or ``'centered'`` (:func:`ropevit_dense.rope.grid_coords`).
        rope_position (str): position convention the family was pretrained with (``'extrapolate'`` /
            ``'interpolate'``), the default of :class:`RoPEViT`.
        out_norm (bool): apply the final LayerNorm (``norm``) to every output map.
        layouts (tuple[CheckpointLayout, ...]): published checkpoint layouts the loader converts.
    """

    name: str
    patch_size: int = 16
    pretrain_img_size: int = 224
    num_register_tokens: int = 0
    mlp: Literal["gelu", "swiglu"] = "gelu"
    mlp_ratio: float = 4.0
    mlp_align: int = 0
    mlp_norm: bool = False
    norm_eps: float = 1e-6
    qkv_bias: Literal["qkv", "qv", "none"] = "qkv"
    init_values: Optional[float] = 1e-5
    use_ape: bool = False
    rope_type: Optional[str] = "mixed"
    rope_theta: Optional[float] = None
    rope_scale: float = 1.0
    rope_y_first: bool = False
    rope_coords: Literal["index", "centered"] = "index"
    rope_position: Literal["extrapolate", "interpolate"] = "extrapolate"
    out_norm: bool = False
    layouts: tuple[CheckpointLayout, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.mlp not in ("gelu", "swiglu"):
            raise ValueError(f"family '{self.name}': mlp must be 'gelu' or 'swiglu', got {self.mlp!r}")
        if self.qkv_bias not in ("qkv", "qv", "none"):
            raise ValueError(f"family '{self.name}': qkv_bias must be 'qkv', 'qv' or 'none', got {self.qkv_bias!r}")
        if self.mlp_norm and self.mlp != "swiglu":
            raise ValueError(f"family '{self.name}': mlp_norm (sub-LN) needs mlp='swiglu'")
        if self.rope_coords not in ("index", "centered"):
            raise ValueError(f"family '{self.name}': rope_coords must be 'index' or 'centered', "
                             f"got {self.rope_coords!r}")

    @property
    def rope_frequency_args(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~ropevit_dense.rope.AxialRoPE` beyond ``head_dim`` / ``theta``."""
        return dict(scale=self.rope_scale, y_first=self.rope_y_first)

    def norm_layer(self) -> partial:
        """``nn.LayerNorm`` with this family's eps."""
        return partial(nn.LayerNorm, eps=self.norm_eps)

    def build_mlp(self, dim: int, mlp_ratio: float) -> nn.Module:
        """The block MLP (timm's ``Mlp`` or ``SwiGLU``, whose parameter names the converters target)."""
        hidden = int(dim * mlp_ratio)
        if self.mlp == "gelu":
            return Mlp(in_features=dim, hidden_features=hidden, act_layer=nn.GELU)
        return SwiGLU(in_features=dim, hidden_features=hidden, norm_layer=self.norm_layer() if self.mlp_norm else None,
                      align_to=self.mlp_align)


_HEADS = ("head.", "fc_norm.", "head_drop.")

ROPE_VIT = ViTFamily(name="rope-vit")

DINOV3 = ViTFamily(
    name="dinov3",
    patch_size=16,
    pretrain_img_size=256,  # DINOv3's global crops (16 x 16 tokens); only rope_position='extrapolate' uses it
    num_register_tokens=4,
    norm_eps=1e-5,
    qkv_bias="qv",
    init_values=1e-5,
    rope_type="axial",
    rope_theta=100.0,
    rope_scale=2 * math.pi,
    rope_y_first=True,
    rope_coords="centered",
    rope_position="interpolate",
    out_norm=True,
    layouts=(
        CheckpointLayout(
            name="official",
            markers=("storage_tokens", "rope_embed.periods", ".ls1.gamma", ".qkv.bias_mask"),
            renames=(("storage_tokens", "register_tokens"), (".ls1.gamma", ".gamma_1"), (".ls2.gamma", ".gamma_2"),
                     (".mlp.w1.", ".mlp.fc1_g."), (".mlp.w2.", ".mlp.fc1_x."), (".mlp.w3.", ".mlp.fc2.")),
            dropped=("mask_token", ".qkv.bias_mask", "rope_embed.periods", "local_cls_norm.", "cls_norm.", *_HEADS),
            rotate_half=True),
        CheckpointLayout(
            name="timm",
            markers=("reg_token", ".attn.q_bias", ".attn.v_bias"),
            renames=(("reg_token", "register_tokens"),),
            dropped=_HEADS,
            rotate_half=True),
    ),
)

DINOV3_PLUS = replace(DINOV3, name="dinov3-plus", mlp="swiglu", mlp_ratio=4.0, mlp_align=8)

EVA02 = ViTFamily(
    name="eva02",
    patch_size=14,
    pretrain_img_size=224,  # 16 x 16 tokens: the grid EVA-02's RoPE positions are interpolated onto
    mlp="swiglu",
    mlp_ratio=4 * 2 / 3,
    mlp_norm=True,
    norm_eps=1e-6,
    qkv_bias="qv",
    init_values=None,
    use_ape=True,
    rope_type="axial",
    rope_theta=10000.0,
    rope_y_first=True,
    rope_coords="index",
    rope_position="interpolate",
    out_norm=False,
    layouts=(
        CheckpointLayout(
            name="official",
            markers=(".mlp.w1.", ".mlp.ffn_ln.", ".attn.q_bias", "freqs_cos"),
            renames=((".mlp.w1.", ".mlp.fc1_g."), (".mlp.w2.", ".mlp.fc1_x."), (".mlp.w3.", ".mlp.fc2."),
                     (".mlp.ffn_ln.", ".mlp.norm.")),
            dropped=("mask_token", "lm_head.", "freqs_cos", "freqs_sin", *_HEADS)),
        CheckpointLayout(
            name="timm",
            markers=(".attn.q_proj.bias", ".attn.v_proj.bias"),
            dropped=_HEADS),
    ),
)

FAMILIES: dict[str, ViTFamily] = {f.name: f for f in (ROPE_VIT, DINOV3, DINOV3_PLUS, EVA02)}


def resolve_family(family: Union[str, ViTFamily, Mapping[str, Any]]) -> ViTFamily:
    """A :class:`ViTFamily` from its name, itself, or a config dict ``{'base': name, <field>: value, ...}``.

    Raises:
        ValueError: unknown name or field, naming the known ones.
    """
    if isinstance(family, ViTFamily):
        return family
    if isinstance(family, str):
        if family not in FAMILIES:
            raise ValueError(f"unknown ViT family '{family}'; known: {', '.join(FAMILIES)}")
        return FAMILIES[family]
    if isinstance(family, Mapping):
        overrides = dict(family)
        base = resolve_family(overrides.pop("base", "rope-vit"))
        known = {f.name for f in fields(ViTFamily)} - {"name", "layouts"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown ViT family fields {unknown}; known: {', '.join(sorted(known))}")
        return replace(base, **overrides)
    raise TypeError(f"family must be a name, a ViTFamily or a dict, got {type(family).__name__}")
