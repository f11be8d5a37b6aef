"""Strict pretrained loading with a report of missing, unexpected, shape-mismatched and deliberately dropped keys."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import resize_rel_pos
from ..rope import PAIR_ROPE_TYPES, is_rope_parameter
from .families import family_to_ours
from .formats import StateDict, select_prefix, state_dict_of, swin_to_ours, unwrap, vit_to_ours
from .io import CheckpointError
from .pickle_safe import load_any

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What happened to every key when a checkpoint was mapped onto a model."""

    source: str
    architecture: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model key was loaded and nothing in the checkpoint was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        def block(title: str, items: list[Any]) -> str:
            shown = ", ".join(map(str, items[:12])) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
            return f"\n  {title} ({len(items)}): {shown}" if items else ""

        mism = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]
        return (
            f"checkpoint '{self.source}' ({self.architecture}) -> {len(self.loaded)} tensors loaded"
            + block("missing in checkpoint", self.missing)
            + block("unexpected in checkpoint", self.unexpected)
            + block("shape mismatch", mism)
            + block("dropped on purpose (derived buffers / classifier / unused by this layout)", self.dropped)
            + block("resized", self.resized)
            + block("new in this layout, kept at their initialisation", self.initialized)
        )


def guess_architecture(sd: Mapping[str, torch.Tensor]) -> str:
    """Name the architecture a state dict looks like (for error messages)."""
    keys = set(sd)
    if any(k.startswith("layers.") and ".blocks." in k for k in keys):
        return "Swin"
    if any(k.startswith(("blocks.", "net.blocks.")) and (".attn.qkv." in k or ".attn.q_proj." in k) for k in keys):
        return "ViT"
    if any(k.startswith(("layer1.", "conv1.", "stem.")) for k in keys):
        return "ResNet-like CNN"
    return "unknown"


def _is_square(n: int) -> bool:
    return n > 0 and int(round(n ** 0.5)) ** 2 == n


def _without_cls_entry(pos: torch.Tensor) -> torch.Tensor:
    """A ``(1, 1 + h*w, C)`` table with a leading cls entry (timm, MAE, detectron2) → its ``(1, h*w, C)`` grid."""
    n = pos.shape[1]
    if not _is_square(n) and _is_square(n - 1):
        return pos[:, 1:]
    return pos


def _resize_grid(t: torch.Tensor, new_hw: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a ``(1, h*w, C)`` square-grid table (APE) to ``new_hw``."""
    n = t.shape[1]
    side = int(round(n ** 0.5))
    if side * side != n:
        raise CheckpointError(f"cannot resize a position embedding of {n} tokens: neither a square grid nor a "
                              "square grid plus one cls entry")
    grid = t.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_hw, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], -1).to(t.dtype)


def _resize_rpb(t: torch.Tensor, window: int) -> torch.Tensor:
    """Bicubic resize of a ``((2w-1)^2, heads)`` relative position bias table to a new window."""
    old = int(round(t.shape[0] ** 0.5))
    new = 2 * window - 1
    grid = t.T.reshape(1, -1, old, old).float()
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return grid.reshape(-1, new * new).T.to(t.dtype).contiguous()


def _adapt_vit(model: nn.Module, sd: StateDict, report: LoadReport) -> StateDict:
    if model.family.layouts:  # DINOv3, EVA-02: their official / timm layouts
        sd = family_to_ours(model, sd, report)
    else:
        sd, dropped = vit_to_ours(sd, depth=model.depth, num_heads=model.num_heads)
        report.dropped += dropped
    if "cls_token" in sd and model.cls_token is None:
        sd.pop("cls_token")
        report.dropped.append("cls_token")  # windowed (ViTDet) layout has no cls token
    pos = sd.get("pos_embed")
    if pos is not None and model.pos_embed is not None:
        pos = _without_cls_entry(pos)
        if pos.shape != model.pos_embed.shape:
            sd["pos_embed"] = _resize_grid(pos, model.ape_grid)
            report.resized.append(f"pos_embed {tuple(pos.shape)} -> {tuple(model.pos_embed.shape)}")
        else:
            sd["pos_embed"] = pos
    _adapt_rel_pos(model, sd, report)
    return sd


def _adapt_rel_pos(model: nn.Module, sd: StateDict, report: LoadReport) -> None:
    """ViTDet relative position tables: resampled when sized for another grid; zero-initialised (the ViTDet
    recipe) when the checkpoint has none at all, e.g. a classification checkpoint."""
    model_sd = model.state_dict()
    ours = [k for k in model_sd if k.endswith((".attn.rel_pos_h", ".attn.rel_pos_w"))]
    theirs = [k for k in sd if k.endswith((".attn.rel_pos_h", ".attn.rel_pos_w"))]
    if ours and not theirs:
        report.initialized += ours
        return
    for k in theirs:
        if k in model_sd and sd[k].ndim == 2 and sd[k].shape[1] == model_sd[k].shape[1] \
                and sd[k].shape[0] != model_sd[k].shape[0]:
            old = tuple(sd[k].shape)
            sd[k] = resize_rel_pos(sd[k], model_sd[k].shape[0])
            report.resized.append(f"{k} {old} -> {tuple(sd[k].shape)}")


def _adapt_swin(model: nn.Module, sd: StateDict, report: LoadReport) -> StateDict:
    sd, dropped = swin_to_ours(sd)
    report.dropped += dropped
    last = model.num_stages - 1
    if not any(k.startswith("norm0.") for k in sd):
        # A classification checkpoint has one final norm; the per-stage output norms of a dense backbone are new.
        report.initialized += [k for k in model.state_dict() if k.split(".")[0] in
                               {f"norm{i}" for i in range(last)}]
    for suffix in ("weight", "bias"):
        if f"norm.{suffix}" in sd:
            value = sd.pop(f"norm.{suffix}")
            if hasattr(model, f"norm{last}"):
                sd[f"norm{last}.{suffix}"] = value
            else:
                report.dropped.append(f"norm.{suffix}")
    model_sd = model.state_dict()
    for k in list(sd):
        if k.endswith("attn.rope.freqs") and k not in model_sd and model.rope_type == "axial" \
                and _is_axial_buffer(model, k, sd[k]):
            sd.pop(k)
            report.dropped.append(k)  # naver's fixed axial buffer: recomputed, not loaded
        elif k.endswith("relative_position_bias_table") and k in model_sd and sd[k].shape != model_sd[k].shape:
            old = tuple(sd[k].shape)
            sd[k] = _resize_rpb(sd[k], model.window_size)
            report.resized.append(f"{k} {old} -> {tuple(sd[k].shape)}")
    return sd


def _is_axial_buffer(model: nn.Module, key: str, value: torch.Tensor) -> bool:
    """True when ``value`` (naver RoPE-Swin ``rope_freqs`` of an axial model) holds exactly the axial frequencies this
    model computes for that layer, so dropping it loses nothing. Learned (RoPE-Mixed) frequencies are not: loading
    them into an axial model would silently change its outputs, so they stay unexpected keys."""
    try:
        attn = model.get_submodule(key.rsplit(".", 2)[0])  # layers.i.blocks.j.attn
        axial = model.rope[str(attn.head_dim)].freqs
    except (AttributeError, KeyError, TypeError):
        return False
    if value.ndim != 3 or value.shape[0] != 2 or value.shape[2] != axial.shape[2]:
        return False
    # naver builds the buffer as the mixed init with angle 0: cos(pi / 2) leaves float32 noise of ~4e-8
    return torch.allclose(value.float(), axial.expand_as(value), rtol=1e-5, atol=1e-6)


def _pair_frequencies(model: nn.Module, key: str, value: torch.Tensor) -> bool:
    """True when ``value`` at ``key`` is a RoPE-ViT frequency table ``(2, heads or 1, head_dim / 2)`` for the
    attention layer the key belongs to (naver / timm RoPE-Mixed weights, naver RoPE-Swin axial buffers)."""
    if not key.endswith(".rope.freqs"):
        return False
    try:  # the attention layer (its RoPE module may be the backbone's, e.g. shared LieRE)
        attn = model.get_submodule(key[: -len(".rope.freqs")])
    except AttributeError:
        return False
    heads, head_dim = getattr(attn, "num_heads", None), getattr(attn, "head_dim", None)
    return (key.endswith(".freqs") and value.ndim == 3 and value.shape[0] == 2 and head_dim is not None
            and value.shape[1] in (1, heads) and value.shape[2] == head_dim // 2)


def _fresh_rope_parameters(model: nn.Module, sd: StateDict, report: LoadReport) -> None:
    """Position modes without published weights (spherical, LieRE, ComRoPE) keep their RoPE initialisation.

    A published checkpoint, i.e. one with RoPE-Mixed / axial frequencies (naver, timm) or without RoPE parameters
    (APE), loads everything else: its frequencies are dropped and the model's RoPE parameters reported as
    initialised. Any other RoPE parameters (a checkpoint trained here in some mode) load as usual, so a mode or
    block-size mismatch stays a strict-loading error.
    """
    if getattr(model, "rope_type", None) in (None, *PAIR_ROPE_TYPES):
        return
    theirs = [k for k in sd if is_rope_parameter(k)]
    if not all(_pair_frequencies(model, k, sd[k]) for k in theirs):
        return
    for k in theirs:
        sd.pop(k)
        report.dropped.append(k)
    report.initialized += [k for k in model.state_dict() if is_rope_parameter(k)]


def load_pretrained(
    model: nn.Module,
    checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
    *,
    strict: bool = True,
    prefix: Optional[str] = None,
) -> LoadReport:
    """Load a checkpoint in any supported format into a :class:`RoPEViT` or :class:`RoPESwin`.

    Args:
        model: the backbone.
        checkpoint: local path, URL, ``hf://owner/repo[/file]`` id (torch files, ``.safetensors`` and plain-pickle
            ``.pkl`` files, all read without running code), or an already loaded checkpoint dict.
        strict (bool): raise :class:`CheckpointError` (with the report) when any key is missing, unexpected
            or of the wrong shape. With False, load what matches and return the report. Default: True.
        prefix (str | None): take only the keys under this prefix (e.g. ``'backbone.net.'``, ``'teacher.'``),
            with the prefix removed, instead of finding the backbone's keys automatically. Default: None.

    Returns:
        LoadReport: the per-key account, also logged.
    """
    from ..backbones import RoPESwin, RoPEViT  # local: backbones import nothing from here

    source = "<dict>" if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)
    obj = checkpoint if isinstance(checkpoint, Mapping) else load_any(checkpoint)
    try:
        sd = unwrap(obj) if prefix is None else select_prefix(state_dict_of(obj), prefix)
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint '{source}': {exc.args[0]}") from None
    arch = guess_architecture(sd)
    report = LoadReport(source=source, architecture=arch)
    if isinstance(model, RoPEViT):
        expected, adapt = "ViT", _adapt_vit
    elif isinstance(model, RoPESwin):
        expected, adapt = "Swin", _adapt_swin
    else:
        raise TypeError(f"load_pretrained supports RoPEViT and RoPESwin, got {type(model).__name__}")
    if arch != expected:
        raise CheckpointError(
            f"checkpoint '{source}' looks like a {arch} checkpoint, but the model is {type(model).__name__} "
            f"(a {expected}); e.g. it has keys {sorted(sd)[:3]}"
        )
    try:
        sd = adapt(model, sd, report)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint '{source}' does not fit {type(model).__name__}: {exc}") from None
    _fresh_rope_parameters(model, sd, report)
    model_sd = model.state_dict()
    report.missing = sorted(k for k in model_sd if k not in sd and k not in report.initialized)
    report.unexpected = sorted(k for k in sd if k not in model_sd)
    report.mismatched = [(k, tuple(v.shape), tuple(model_sd[k].shape)) for k, v in sd.items()
                         if k in model_sd and v.shape != model_sd[k].shape]
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__} (strict loading):\n{report}")
    good = {k: v for k, v in sd.items() if k in model_sd and v.shape == model_sd[k].shape}
    model.load_state_dict(good, strict=False)
    report.loaded = sorted(good)
    logger.info("%s", report)
    return report
