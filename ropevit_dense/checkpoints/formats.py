"""Converters from published checkpoint layouts to this package's parameter names, one per source format.

Formats:
    * naver RoPE-ViT (``naver-ai/rope-vit`` ``pytorch_model.bin``): ``{'model': state_dict}``; RoPE-Mixed
      frequencies as one flat ``freqs`` of shape ``(2, depth, heads * head_dim / 2)``; ``freqs_t_x`` /
      ``freqs_t_y`` position buffers.
    * naver RoPE-Swin: Microsoft Swin names with ``attn.rope_freqs`` ``(2, heads, head_dim / 2)`` per block
      (a buffer for axial), ``attn.rope_t_x`` / ``rope_t_y``, ``attn_mask`` and ``relative_position_index``
      buffers.
    * timm's naver-compatible ViTs (``vit_*_patch16_rope*_224``): ``rope.freqs`` ``(2, depth, heads, head_dim/2)``.
    * OpenMMLab / detectron2 training checkpoints: ``state_dict`` / ``model`` wrappers, ``module.`` (DDP) and
      ``backbone.`` prefixes; in detectron2, ``backbone.net.`` (ViTDet) or ``backbone.bottom_up.`` (FPN).
    * our own layout (returned unchanged).

Every converter returns ``(state_dict, dropped)`` where ``dropped`` names the keys removed on purpose (derived
buffers, classifier heads) so the load report can show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]

# Keys that only the classifier uses; a dense-prediction backbone has no place for them.
CLASSIFIER_PREFIXES = ("head.", "fc_norm.", "head_drop.")
# Buffers the reference code derives from the input size; never loaded.
DERIVED_SUFFIXES = ("freqs_t_x", "freqs_t_y", "freqs_cis", "rope_t_x", "rope_t_y", "attn_mask",
                    "relative_position_index", "relative_coords_table")


def state_dict_of(obj: Any) -> StateDict:
    """The tensors of a checkpoint object, keys as stored.

    Accepts a bare state dict or the wrappers ``model`` (naver, detectron2), ``state_dict`` (mmengine),
    ``model_ema`` / ``module``; strips a ``module.`` (DDP) prefix carried by every key.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a checkpoint dict, got {type(obj).__name__}")
    for key in ("state_dict", "model", "model_ema", "module"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise TypeError("the checkpoint holds no tensors (expected a state dict or a 'model' / 'state_dict' entry)")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def select_prefix(sd: StateDict, prefix: str) -> StateDict:
    """The entries of ``sd`` under ``prefix`` (e.g. ``'backbone.'``), with the prefix removed."""
    if not prefix:
        return dict(sd)
    picked = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not picked:
        sample = ", ".join(sorted(sd)[:3])
        raise KeyError(f"no key starts with prefix '{prefix}' (keys look like: {sample}, ...)")
    return picked


# Where a whole detector / segmentor keeps its backbone, outermost first: ``backbone.`` (OpenMMLab, detectron2),
# then inside a detectron2 backbone the module it wraps: ``bottom_up.`` (FPN over RoPE-Swin stages) and ``net.``
# (ViTDet's simple feature pyramid over RoPE-ViT; detrex DINO). Nested forms such as ``backbone.bottom_up.net.``
# unwrap level by level.
BACKBONE_PREFIXES = ("backbone.", "bottom_up.", "net.")


def strip_backbone_prefixes(sd: StateDict) -> StateDict:
    """The backbone's entries of a detector / segmentor state dict, without the prefixes that lead to it.

    For each of :data:`BACKBONE_PREFIXES` in turn, when some key carries it, only the keys that do are kept, with
    the prefix removed (the necks / heads beside them are dropped). A bare backbone state dict has none of these
    prefixes and is returned unchanged.
    """
    for prefix in BACKBONE_PREFIXES:
        inner = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if inner:
            sd = inner
    return sd


def unwrap(obj: Any) -> StateDict:
    """Find the state dict inside a checkpoint object and strip framework prefixes.

    See :func:`state_dict_of` for the wrappers and :func:`strip_backbone_prefixes` for the prefixes: the
    ``backbone.`` entries of an OpenMMLab detector / segmentor, the ``backbone.net.`` (ViTDet) or
    ``backbone.bottom_up.`` (FPN) entries of a detectron2 one.
    """
    return strip_backbone_prefixes(state_dict_of(obj))


def _split_dropped(sd: StateDict, drop_classifier: bool = True) -> tuple[StateDict, list[str]]:
    kept, dropped = {}, []
    for k, v in sd.items():
        if k.endswith(DERIVED_SUFFIXES) or (drop_classifier and k.startswith(CLASSIFIER_PREFIXES)):
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def vit_to_ours(sd: StateDict, *, depth: int, num_heads: int) -> tuple[StateDict, list[str]]:
    """naver / timm / our RoPE-ViT layout → ours (per-block ``blocks.i.attn.rope.freqs``).

    Args:
        sd: unwrapped state dict.
        depth: blocks of the target model (to split the stacked mixed frequencies).
        num_heads: heads of the target model.
    """
    sd, dropped = _split_dropped(sd)
    out: StateDict = {}
    for k, v in sd.items():
        if k in ("freqs", "rope.freqs"):  # naver flat (2, depth, heads*hd/2) or timm (2, depth, heads, hd/2)
            if v.ndim not in (3, 4) or v.shape[0] != 2 or v.shape[1] != depth:
                raise ValueError(f"'{k}' has shape {tuple(v.shape)}; expected (2, {depth}, ...) for depth {depth}")
            if v[0, 0].numel() % num_heads:
                raise ValueError(f"'{k}' of shape {tuple(v.shape)} cannot be split into {num_heads} heads")
            v = v.reshape(2, depth, num_heads, -1)
            for i in range(depth):
                out[f"blocks.{i}.attn.rope.freqs"] = v[:, i].clone()
        elif k == "norm.weight" or k == "norm.bias":
            dropped.append(k)  # final classifier norm: the dense backbone returns block outputs (ViTDet / BEiT)
        else:
            out[k] = v
    return out, dropped


def swin_to_ours(sd: StateDict) -> tuple[StateDict, list[str]]:
    """naver RoPE-Swin / Microsoft Swin layout → ours.

    ``attn.rope_freqs`` → ``attn.rope.freqs``; the final ``norm`` → ``norm{last stage}`` is done by the caller,
    which knows the stage count.
    """
    sd, dropped = _split_dropped(sd)
    out: StateDict = {}
    for k, v in sd.items():
        out[k.replace("attn.rope_freqs", "attn.rope.freqs")] = v
    return out, dropped
