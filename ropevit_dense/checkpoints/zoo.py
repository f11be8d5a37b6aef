"""Published RoPE-ViT / RoPE-Swin checkpoints by name, and one call that builds the matching backbone.

Names are those of the naver-ai Hugging Face repositories (``hf://naver-ai/<name>``) and of timm's re-hosted
copies (``<timm model>.naver_in1k``, ``hf://timm/<name>``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from torch import nn

from ..backbones import SWIN_PRESETS, VIT_PRESETS, RoPESwin, RoPEViT
from .load import LoadReport, load_pretrained


@dataclass(frozen=True)
class PretrainedSpec:
    """What a published checkpoint is: backbone family, size preset, position encoding, where it lives."""

    family: str  # "vit" | "swin"
    preset: str  # "s" / "b" / "l" (ViT), "t" / "s" / "b" (Swin)
    rope_type: Optional[str]
    use_ape: bool = False
    use_rpb: bool = False
    source: str = ""

    def backbone_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the backbone these weights belong to."""
        if self.family == "vit":
            return dict(**VIT_PRESETS[self.preset], rope_type=self.rope_type, use_ape=self.use_ape)
        return dict(**SWIN_PRESETS[self.preset], rope_type=self.rope_type, use_rpb=self.use_rpb, window_size=7)


def _naver_vit() -> dict[str, PretrainedSpec]:
    sizes = {"s": "small", "b": "base", "l": "large"}
    table = {}
    for preset, size in sizes.items():
        table[f"deit_{size}_patch16_LS"] = PretrainedSpec("vit", preset, None, use_ape=True)
        for rope in ("axial", "mixed"):
            for ape in (False, True):
                name = f"rope_{rope}{'_ape' if ape else ''}_deit_{size}_patch16_LS"
                table[name] = PretrainedSpec("vit", preset, rope, use_ape=ape)
    return {k: PretrainedSpec(**{**v.__dict__, "source": f"hf://naver-ai/{k}/pytorch_model.bin"})
            for k, v in table.items()}


def _naver_swin() -> dict[str, PretrainedSpec]:
    sizes = {"t": "tiny", "s": "small", "b": "base"}
    return {
        f"swin_rope_{rope}_{size}_patch4_window7_224": PretrainedSpec(
            "swin", preset, rope, source=f"hf://naver-ai/swin_rope_{rope}_{size}_patch4_window7_224/pytorch_model.bin")
        for preset, size in sizes.items() for rope in ("axial", "mixed")
    }


def _timm_vit() -> dict[str, PretrainedSpec]:
    sizes = {"s": "small", "b": "base", "l": "large"}
    table = {}
    for preset, size in sizes.items():
        for rope, tag in (("axial", "rope"), ("mixed", "rope_mixed")):
            for ape in (False, True):
                name = f"vit_{size}_patch16_{tag}{'_ape' if ape else ''}_224.naver_in1k"
                table[name] = PretrainedSpec("vit", preset, rope, use_ape=ape,
                                             source=f"hf://timm/{name}/model.safetensors")
    return table


NAVER_VIT = _naver_vit()  # 15 checkpoints: DeiT-III LS (APE) and RoPE axial / mixed, each with or without APE
NAVER_SWIN = _naver_swin()  # 6 checkpoints: RoPE axial / mixed Swin T / S / B (window 7, 224)
TIMM_VIT = _timm_vit()  # 12 timm copies of the naver RoPE ViTs
PRETRAINED: dict[str, PretrainedSpec] = {**NAVER_VIT, **NAVER_SWIN, **TIMM_VIT}


def pretrained_spec(name: str) -> PretrainedSpec:
    """Look a checkpoint name up; the error lists the known names."""
    try:
        return PRETRAINED[name]
    except KeyError:
        raise KeyError(f"unknown pretrained checkpoint '{name}'; known: {', '.join(sorted(PRETRAINED))}") from None


def create_backbone(
    name: str,
    *,
    pretrained: Union[bool, str, os.PathLike] = True,
    strict: bool = True,
    **overrides: Any,
) -> tuple[nn.Module, Optional[LoadReport]]:
    """Build the backbone that a published checkpoint belongs to and (optionally) load it.

    Args:
        name (str): a key of :data:`PRETRAINED`, e.g. ``'rope_mixed_deit_base_patch16_LS'``.
        pretrained (bool | str | PathLike): True downloads from the checkpoint's hub location; a path / URL
            loads that file instead (e.g. a local copy); False builds with random weights.
        strict (bool): strict key checking (see :func:`load_pretrained`). Default: True.
        **overrides: further constructor arguments (``window_size``, ``global_block_indexes``, ``out_indices``,
            ``drop_path_rate``, ...). Arguments that would change the checkpoint's architecture are refused.

    Returns:
        (backbone, report): the report is None when nothing was loaded.
    """
    spec = pretrained_spec(name)
    kwargs = spec.backbone_kwargs()
    fixed = {"embed_dim", "depth", "depths", "num_heads", "rope_type", "use_ape", "use_rpb"}
    clash = sorted(k for k in overrides if k in fixed and overrides[k] != kwargs.get(k))
    if clash:
        raise ValueError(f"{clash} would change the architecture of '{name}' ({ {k: kwargs[k] for k in clash} })")
    kwargs.update(overrides)
    model = (RoPEViT if spec.family == "vit" else RoPESwin)(**kwargs)
    if pretrained is False:
        return model, None
    source = spec.source if pretrained is True else pretrained
    return model, load_pretrained(model, source, strict=strict)
