"""Layer-wise learning-rate decay for RoPE-ViT (BEiT / ViTDet / EVA style), framework-agnostic.

A parameter's layer id is 0 for the patch embedding, cls / register tokens and absolute position embedding,
``i + 1`` for anything inside ``blocks.i`` (its RoPE-Mixed frequencies included) and ``depth + 1`` for the rest of
the model (final norms, necks, heads); its learning rate is scaled by ``decay_rate ** (depth + 1 - layer_id)``.
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBED = ("patch_embed", "cls_token", "register_tokens", "pos_embed")


def vit_layer_id(name: str, depth: int, backbone_prefix: str = "backbone.") -> int:
    """Layer id of a parameter of a model whose RoPE-ViT sits under ``backbone_prefix`` (``''`` for a bare one)."""
    if not name.startswith(backbone_prefix):
        return depth + 1
    local = name[len(backbone_prefix):]
    if local.split(".")[0] in _EMBED:
        return 0
    match = _BLOCK.match(local) if local.startswith("blocks.") else None
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def vit_lr_scale(name: str, depth: int, decay_rate: float, backbone_prefix: str = "backbone.") -> float:
    """``decay_rate ** (depth + 1 - layer_id)``: 1 for heads, smallest for the patch embedding."""
    if not 0.0 < decay_rate <= 1.0:
        raise ValueError(f"layer decay rate must be in (0, 1], got {decay_rate}")
    return decay_rate ** (depth + 1 - vit_layer_id(name, depth, backbone_prefix))
