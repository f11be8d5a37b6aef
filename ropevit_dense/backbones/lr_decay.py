"""Layer-wise learning-rate decay for RoPE-ViT and RoPE-Swin, framework-agnostic.

Every parameter of a backbone gets a layer id between 0 (the input end) and ``num_layers + 1`` (everything after
the backbone: necks, heads); its learning rate is scaled by ``decay_rate ** (num_layers + 1 - layer_id)``.

* RoPE-ViT (BEiT / ViTDet / EVA): 0 for the patch embedding, cls / register tokens and absolute position
  embedding, ``i + 1`` for anything inside ``blocks.i`` (its RoPE-Mixed frequencies included), ``depth + 1`` for
  the rest; ``num_layers = depth``.
* RoPE-Swin (the per-block rule of SimMIM / Swin V2 fine-tuning): 0 for the patch embedding, one id per block
  counted across stages (``layers.s.blocks.b`` -> ``depths[0] + ... + depths[s-1] + b + 1``), the patch merging at
  the end of stage ``s`` shares the id of that stage's last block, ``sum(depths) + 1`` for the rest (the output
  norms included); ``num_layers = sum(depths)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBED = ("patch_embed", "cls_token", "register_tokens", "pos_embed", "rope")  # rope: shared LieRE
_SWIN = re.compile(r"layers\.(\d+)\.(blocks\.(\d+)|downsample)\.")
_SWIN_EMBED = ("patch_embed", "absolute_pos_embed", "rope")


def _check_rate(decay_rate: float) -> None:
    if not 0.0 < decay_rate <= 1.0:
        raise ValueError(f"layer decay rate must be in (0, 1], got {decay_rate}")


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
    _check_rate(decay_rate)
    return decay_rate ** (depth + 1 - vit_layer_id(name, depth, backbone_prefix))


def swin_layer_id(name: str, depths: Sequence[int], backbone_prefix: str = "backbone.") -> int:
    """Layer id of a parameter of a model whose RoPE-Swin (blocks per stage ``depths``) sits under
    ``backbone_prefix``."""
    total = sum(depths)
    if not name.startswith(backbone_prefix):
        return total + 1
    local = name[len(backbone_prefix):]
    if local.split(".")[0] in _SWIN_EMBED:
        return 0
    match = _SWIN.match(local)
    if match is None:
        return total + 1
    stage = int(match.group(1))
    if stage >= len(depths):
        raise ValueError(f"{name}: stage {stage} is beyond the {len(depths)} stages of depths={tuple(depths)}")
    if match.group(3) is None:  # patch merging at the end of the stage
        return sum(depths[: stage + 1])
    block = int(match.group(3))
    if block >= depths[stage]:
        raise ValueError(f"{name}: block {block} is beyond the {depths[stage]} blocks of stage {stage}")
    return sum(depths[:stage]) + block + 1


def swin_lr_scale(name: str, depths: Sequence[int], decay_rate: float, backbone_prefix: str = "backbone.") -> float:
    """``decay_rate ** (sum(depths) + 1 - layer_id)``: 1 for heads and output norms, smallest for the patch
    embedding."""
    _check_rate(decay_rate)
    return decay_rate ** (sum(depths) + 1 - swin_layer_id(name, depths, backbone_prefix))
