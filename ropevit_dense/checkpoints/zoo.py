"""Published RoPE-ViT / RoPE-Swin / DINOv3 / EVA-02 checkpoints by name, and one call that builds the matching backbone.

Names are those of the naver-ai Hugging Face repositories (``hf://naver-ai/<name>``), of timm's hub copies
(``<timm model>.<tag>``, ``hf://timm/<name>``), of the DINOv3 ``torch.hub`` entry points (``dinov3_vitb16``) and of
the EVA-02 pretraining files (``eva02_B_pt_in21k_p14``, ``hf://Yuxin-CV/EVA-02``).

DINOv3 weights are gated: accept the licence on the hub page of the repository (e.g.
https://huggingface.co/timm/vit_base_patch16_dinov3.lvd1689m) and log in (``huggingface-cli login``) or set
``HF_TOKEN``; the loader passes the token through ``huggingface_hub``. Meta distributes the official ``.pth`` files of
the ``dinov3_*`` names by a download link after accepting the licence
(https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/): pass such a file as ``pretrained=<path>``.
Without one, those names download timm's ``_qkvb`` copy of the same weights (the q / v biases kept, all zero), which
the loader reads as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from torch import nn

from ..backbones import SWIN_PRESETS, VIT_PRESETS, RoPESwin, RoPEViT, resolve_family
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
    vit_family: str = "rope-vit"  # the ViT family (ropevit_dense.backbones.FAMILIES) of a "vit" checkpoint
    extra: tuple[tuple[str, Any], ...] = ()  # further constructor arguments the weights fix (e.g. qkv_bias=False)

    def backbone_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the backbone these weights belong to."""
        if self.family == "vit" and self.vit_family != "rope-vit":
            return dict(family=self.vit_family, **VIT_PRESETS[self.preset], **dict(self.extra))
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


def _dinov3() -> dict[str, PretrainedSpec]:
    """DINOv3 ViT-S/16, S+/16, B/16, L/16 (distilled, LVD-1689M; L also SAT-493M): timm names and torch.hub names."""
    sizes = {"s": ("small", "vits16"), "splus": ("small_plus", "vits16plus"), "b": ("base", "vitb16"),
             "l": ("large", "vitl16")}
    table = {}
    for key, (size, hub) in sizes.items():
        preset, fam = ("s", "dinov3-plus") if key == "splus" else (key, "dinov3")
        for tag in ("lvd1689m", "sat493m") if key == "l" else ("lvd1689m",):
            for bias in (False, True):
                name = f"vit_{size}_patch16_dinov3{'_qkvb' if bias else ''}.{tag}"
                table[name] = PretrainedSpec("vit", preset, "axial", source=f"hf://timm/{name}/model.safetensors",
                                             vit_family=fam, extra=() if bias else (("qkv_bias", False),))
            official = f"dinov3_{hub}" + ("" if tag == "lvd1689m" else f"_{tag}")
            table[official] = PretrainedSpec(
                "vit", preset, "axial", vit_family=fam,
                source=f"hf://timm/vit_{size}_patch16_dinov3_qkvb.{tag}/model.safetensors")
    return table


def _eva02() -> dict[str, PretrainedSpec]:
    """EVA-02 B/14 and L/14 MIM-pretrained: timm names, the official files, and their patch-16 conversions."""
    table = {}
    for preset, size, data in (("b", "base", "in22k"), ("l", "large", "in22k"), ("l", "large", "m38m")):
        name = f"eva02_{size}_patch14_224.mim_{data}"
        table[name] = PretrainedSpec("vit", preset, "axial", vit_family="eva02",
                                     source=f"hf://timm/{name}/model.safetensors")
        for patch in ("p14", "p14to16"):
            official = f"eva02_{preset.upper()}_pt_{data.replace('22k', '21k')}_{patch}"
            # p14to16: the patch embedding resampled to 16 x 16 (detrex's DINO-EVA-02); RoPE keeps the 16 x 16 grid
            extra = (("patch_size", 16), ("pretrain_img_size", 256)) if patch == "p14to16" else ()
            table[official] = PretrainedSpec("vit", preset, "axial", vit_family="eva02", extra=extra,
                                             source=f"hf://Yuxin-CV/EVA-02/eva02/pt/{official}.pt")
    return table


NAVER_VIT = _naver_vit()  # 15 checkpoints: DeiT-III LS (APE) and RoPE axial / mixed, each with or without APE
NAVER_SWIN = _naver_swin()  # 6 checkpoints: RoPE axial / mixed Swin T / S / B (window 7, 224)
TIMM_VIT = _timm_vit()  # 12 timm copies of the naver RoPE ViTs
DINOV3 = _dinov3()  # 15 names: timm (with / without q-v bias) and torch.hub names of DINOv3 S, S+, B, L (+ L SAT)
EVA02 = _eva02()  # 9 names: timm and official (patch 14, and patch 16 for DINO-EVA-02) EVA-02 B / L
PRETRAINED: dict[str, PretrainedSpec] = {**NAVER_VIT, **NAVER_SWIN, **TIMM_VIT, **DINOV3, **EVA02}


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
    # what a family's weights fix where the family's default does not hold (RoPE-ViT names leave these out)
    implied = {} if spec.family != "vit" else dict(
        family=kwargs.get("family", "rope-vit"), qkv_bias=kwargs.get("qkv_bias", True),
        patch_size=kwargs.get("patch_size", resolve_family(kwargs.get("family", "rope-vit")).patch_size))
    clash = sorted(k for k in overrides if (k in fixed and overrides[k] != kwargs.get(k))
                   or (k in implied and overrides[k] != implied[k]))
    if clash:
        expected = {k: kwargs.get(k, implied.get(k)) for k in clash}
        raise ValueError(f"{clash} would change the architecture of '{name}' ({expected})")
    kwargs.update(overrides)
    model = (RoPEViT if spec.family == "vit" else RoPESwin)(**kwargs)
    if pretrained is False:
        return model, None
    source = spec.source if pretrained is True else pretrained
    return model, load_pretrained(model, source, strict=strict)
