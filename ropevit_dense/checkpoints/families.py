"""Converters from the published layouts of other ViT families (DINOv3, EVA-02) to this package's names.

Each family record (:mod:`ropevit_dense.backbones.families`) lists its layouts as data: the keys that identify
them, substring renames, and keys with no place in a dense backbone. This module applies them and does the few
things a rename cannot:

* separate ``q_proj`` / ``k_proj`` / ``v_proj`` projections and ``q_bias`` / ``v_bias`` vectors are fused into one
  ``attn.qkv`` (weight ``(3C, C)``, bias ``(3C,)`` with a zero key third);
* rotate-half query / key channels (DINOv3) are permuted into the interleaved pairs of the package's one rotation:
  channel ``j`` of a head and channel ``j + head_dim / 2`` become the pair ``(2j, 2j + 1)``;
* a position embedding with a cls entry (EVA-02) gives that entry to the cls token (timm and EVA-02 add it to the
  cls token; the entry is constant, so folding it in is exact);
* DINOv3's saved RoPE ``periods`` buffer (derived; the released files hold it in bfloat16) is compared with the
  periods the model computes in float32 and then dropped, so a file made with another RoPE setting is refused
  instead of silently changing the positions.

Our own layout (files written by this package) passes through: it is recognised by the ``register_tokens`` name or,
for windowed layouts, by the absence of a cls token, which every published file has.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import torch
from torch import nn

from ..backbones.families import CheckpointLayout, ViTFamily
from .formats import DERIVED_SUFFIXES, StateDict

_ATTN = re.compile(r"^(blocks\.\d+\.attn\.)")
# the key-bias-free and the separate projection names of a block's attention, all fused into qkv
_QKV_PARTS = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias", "k_proj.bias", "v_proj.bias",
              "q_bias", "k_bias", "v_bias", "qkv.weight", "qkv.bias")


def detect_layout(sd: StateDict, family: ViTFamily) -> Optional[CheckpointLayout]:
    """The family layout whose marker keys ``sd`` holds, or None for our own layout."""
    for layout in family.layouts:
        if any(m in k for k in sd for m in layout.markers):
            return layout
    return None


def guess_family(sd: StateDict) -> Optional[str]:
    """The ViT family a state dict belongs to, from names only its layouts use; None when nothing tells (the
    RoPE-ViT family, or a windowed checkpoint of ours without registers or separate projections)."""
    keys = list(sd)

    def has(*subs: str) -> bool:
        return any(s in k for k in keys for s in subs)

    if has("storage_tokens", "reg_token", "register_tokens", "rope_embed.periods", ".ls1.gamma", ".qkv.bias_mask"):
        return "dinov3-plus" if has(".mlp.w1.", ".mlp.fc1_g.") else "dinov3"
    if has(".attn.q_proj.", ".mlp.ffn_ln.", "freqs_cos") or (has(".mlp.fc1_g.") and has(".mlp.norm.")):
        return "eva02"
    return None


def rotate_half_to_interleaved(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Reorder the output rows (weight rows or bias entries) of one projection, head by head.

    Row ``j`` and row ``j + head_dim / 2`` of each head become rows ``2j`` and ``2j + 1``.

    Args:
        rows (Tensor): ``(heads * head_dim, ...)``.
        head_dim (int): channels per head (even).

    Returns:
        Tensor: same shape.
    """
    half = head_dim // 2
    perm = torch.stack((torch.arange(half), torch.arange(half) + half), dim=1).reshape(-1)
    shaped = rows.reshape(-1, head_dim, *rows.shape[1:])
    return shaped[:, perm].reshape(rows.shape)


def _check_periods(value: torch.Tensor, model: nn.Module) -> None:
    """DINOv3's saved ``periods`` must be the ones the model derives (equal up to the file's bfloat16 rounding)."""
    rope = getattr(model, "rope", None)
    if not isinstance(getattr(rope, "theta", None), float):
        return  # no RoPE (the no-position floor): nothing to compare the periods with
    quarter = rope.head_dim // 4
    expected = rope.theta ** (torch.arange(quarter, dtype=torch.float64) * 4 / rope.head_dim)
    got = value.double().reshape(-1)
    # bfloat16 keeps 8 significant bits: a relative error up to 2 ** -8
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=2 ** -8, atol=0.0):
        raise ValueError(
            f"'rope_embed.periods' {[round(v, 4) for v in got.tolist()[:4]]}... do not match the periods of this "
            f"model's RoPE (base {rope.theta:g}: {[round(v, 4) for v in expected.tolist()[:4]]}..., {quarter} per "
            "axis); the checkpoint was made with another RoPE setting (base, min / max period or head width), which "
            "this backbone does not reproduce")


def _fuse_qkv(parts: dict[str, torch.Tensor], prefix: str, kind: str, *, masked_key_bias: bool
              ) -> tuple[StateDict, list[str], list[str]]:
    """One block's ``attn.qkv`` from whatever projection tensors a layout stores.

    Args:
        parts: the block's projection tensors by local name (``qkv.weight``, ``q_proj.weight``, ``q_bias``, ...).
        prefix: ``blocks.i.attn.``.
        kind: the model's bias kind, ``'qkv'``, ``'qv'`` or ``'none'``.
        masked_key_bias: the source model zeroes the key third of a fused ``qkv.bias`` in its forward (DINOv3's
            bias mask), so whatever that third holds has no effect and is not loaded.

    Returns:
        (tensors, dropped, initialised): our keys; keys dropped on purpose (zero biases a bias-free model has no
        place for); our keys left at their initialisation (a zero bias the checkpoint did not store).
    """
    out: StateDict = {}
    dropped: list[str] = []
    initialised: list[str] = []
    if "qkv.weight" in parts:
        out[prefix + "qkv.weight"] = parts["qkv.weight"]
    else:
        missing = [n for n in ("q_proj.weight", "k_proj.weight", "v_proj.weight") if n not in parts]
        if missing:
            raise ValueError(f"'{prefix}' has separate projections but lacks {[prefix + n for n in missing]}")
        out[prefix + "qkv.weight"] = torch.cat([parts[f"{n}_proj.weight"] for n in "qkv"])
    dim = out[prefix + "qkv.weight"].shape[0] // 3
    if "qkv.bias" in parts:
        q, k, v = parts["qkv.bias"].chunk(3)
        if masked_key_bias:
            k = None
    else:
        q = parts.get("q_bias", parts.get("q_proj.bias"))
        k = parts.get("k_bias", parts.get("k_proj.bias"))
        v = parts.get("v_bias", parts.get("v_proj.bias"))
    stored = [t for t in (q, k, v) if t is not None]
    if kind == "qv" and k is not None and torch.count_nonzero(k):
        raise ValueError(f"'{prefix}' has a non-zero key bias, but this model's keys take no bias")
    if kind == "none":
        if any(torch.count_nonzero(t) for t in stored):
            raise ValueError(f"'{prefix}' has non-zero q / v biases but the model has none (qkv_bias=False); "
                             "build it with qkv_bias=True")
        dropped += [prefix + n for n in _QKV_PARTS if "bias" in n and n in parts]
        return out, dropped, initialised
    if not stored:
        initialised.append(prefix + "qkv.bias")  # the file dropped all-zero biases (timm's non-qkvb DINOv3)
        return out, dropped, initialised
    zeros = torch.zeros(dim, dtype=stored[0].dtype)
    q, k, v = (zeros if t is None else t for t in (q, k, v))
    out[prefix + "qkv.bias"] = torch.cat((q, zeros if kind == "qv" else k, v))
    return out, dropped, initialised


def _fold_cls_position(sd: StateDict) -> None:
    """``pos_embed`` ``(1, 1 + h * w, C)`` with a cls entry: add the entry to ``cls_token`` and remove it."""
    pos, cls = sd.get("pos_embed"), sd.get("cls_token")
    if pos is None or cls is None or pos.ndim != 3:
        return
    n = pos.shape[1]
    square = int(round((n - 1) ** 0.5)) ** 2 == n - 1 and int(round(n ** 0.5)) ** 2 != n
    if square:
        sd["cls_token"] = cls + pos[:, :1].to(cls.dtype)
        sd["pos_embed"] = pos[:, 1:]


def family_to_ours(model: nn.Module, sd: StateDict, report: Any) -> StateDict:
    """Convert ``sd`` (official, timm or our layout of ``model.family``) to ``model``'s names.

    Args:
        model: a :class:`~ropevit_dense.backbones.RoPEViT` of a family with checkpoint layouts.
        sd: unwrapped state dict.
        report: the :class:`~ropevit_dense.checkpoints.LoadReport` that collects dropped / initialised keys.

    Returns:
        StateDict: our names; ``pos_embed`` / ``cls_token`` are left to the generic ViT adaptation.

    Raises:
        ValueError: a tensor that cannot be mapped without changing the model (periods, biases, projections).
    """
    family: ViTFamily = model.family
    if sd and all(k.startswith("net.") for k in sd):  # detectron2 ViTDet: backbone.net.<ViT>
        sd = {k[len("net."):]: v for k, v in sd.items()}
    layout = detect_layout(sd, family)
    dropped_subs = layout.dropped if layout is not None else ("head.", "fc_norm.", "head_drop.")
    out: StateDict = {}
    attn: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key == "rope_embed.periods":
            _check_periods(value, model)
        if any(s in key for s in dropped_subs) or key.endswith(DERIVED_SUFFIXES):
            report.dropped.append(key)
            continue
        for old, new in (layout.renames if layout is not None else ()):
            key = key.replace(old, new)
        m = _ATTN.match(key)
        if m and key[m.end():] in _QKV_PARTS:
            attn.setdefault(m.group(1), {})[key[m.end():]] = value
            continue
        out[key] = value
    kind = _qkv_kind(model)
    for prefix, parts in attn.items():
        fused, dropped, initialised = _fuse_qkv(parts, prefix, kind,
                                                masked_key_bias=family.qkv_bias == "qv")
        report.dropped += dropped
        report.initialized += initialised
        out.update(fused)
    if layout is not None and layout.rotate_half:
        head_dim = model.embed_dim // model.num_heads
        for key in [k for k in out if k.endswith((".attn.qkv.weight", ".attn.qkv.bias"))]:
            q, k, v = out[key].chunk(3)
            out[key] = torch.cat((rotate_half_to_interleaved(q, head_dim), rotate_half_to_interleaved(k, head_dim), v))
    _fold_cls_position(out)
    for name, kept in (("norm.", model.norm is not None), ("register_tokens", model.register_tokens is not None)):
        if not kept:
            gone = [k for k in out if k.startswith(name)]
            report.dropped += gone  # final norm unused by this layout, or registers of a windowed backbone
            for k in gone:
                out.pop(k)
    return out


def _qkv_kind(model: nn.Module) -> str:
    qkv = model.blocks[0].attn.qkv
    if qkv.bias is None:
        return "none"
    return "qv" if hasattr(qkv, "bias_mask") else "qkv"
