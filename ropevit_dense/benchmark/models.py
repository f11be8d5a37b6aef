"""The models of the benchmark rows: a backbone in one position mode and layout, a floor, or a whole mmdet / mmseg
model from a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODES: dict[str, dict[str, Any]] = {  # name -> constructor arguments of our backbones
    "none": dict(rope_type=None, use_ape=False),  # our floor: no position encoding (also for EVA-02, whose APE is on)
    "timm": {},  # the outside floor: timm's plain ViT (no position embedding) or timm's Swin (its RPB), see build()
    "ape": dict(rope_type=None, use_ape=True),
    "axial": dict(rope_type="axial"),
    "mixed": dict(rope_type="mixed"),
    "mixed-ape": dict(rope_type="mixed", use_ape=True),
    "rpb": dict(rope_type=None, use_rpb=True),
    "mixed-rpb": dict(rope_type="mixed", use_rpb=True),
    "spherical": dict(rope_type="spherical"),
    "liere": dict(rope_type="liere"),
    "liere-per-layer": dict(rope_type="liere-per-layer"),
    "comrope-ap": dict(rope_type="comrope-ap"),
    "comrope-ld": dict(rope_type="comrope-ld"),
}
FLOORS = ("none", "timm")
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "vit-s": ("RoPEViT", dict(embed_dim=384, depth=12, num_heads=6)),
    "vit-b": ("RoPEViT", dict(embed_dim=768, depth=12, num_heads=12)),
    "vit-l": ("RoPEViT", dict(embed_dim=1024, depth=24, num_heads=16)),
    # other RoPE ViT families (their 'axial' mode is their own pretrained RoPE; EVA-02 keeps its APE unless 'none')
    "dinov3-b": ("RoPEViT", dict(family="dinov3", embed_dim=768, depth=12, num_heads=12)),
    "eva02-b": ("RoPEViT", dict(family="eva02", embed_dim=768, depth=12, num_heads=12)),
    "swin-t": ("RoPESwin", dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))),
    "swin-b": ("RoPESwin", dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))),
}
LAYOUTS: dict[str, dict[str, Any]] = {"global": {}, "vitdet": dict(window_size=14, global_block_indexes=(2, 5, 8, 11))}


def position_label(backbone: dict) -> str:
    """Position mode of a config's backbone, in the names of :data:`MODES` (e.g. ``mixed-ape``); a backbone of
    another family (``family='dinov3'``, ...) with its own RoPE is labelled by the family's name."""
    family = backbone.get("family", "rope-vit")
    rope = backbone.get("rope_type", "mixed" if family == "rope-vit" else family)  # the backbones' defaults
    rope = family if rope == "family" else rope
    parts = ([rope] if rope else []) + [name for key, name in (("use_ape", "ape"), ("use_rpb", "rpb"))
                                        if backbone.get(key)]
    return "-".join(parts) or "none"


def load_config(path: str, floor: bool = False):
    """An mmdet / mmseg config with its ``custom_imports`` done and its default scope set.

    Args:
        path: the config file.
        floor: strip the backbone's position encoding (``rope_type=None``, no APE / RPB).

    Returns:
        Config: the loaded config (``cfg.model`` is what gets built).
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    if not Path(path).is_file():
        raise FileNotFoundError(f"config not found: '{path}'")
    cfg = Config.fromfile(path)
    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg["custom_imports"])
    scope = cfg.get("default_scope")
    if scope not in ("mmdet", "mmseg"):
        raise ValueError(f"config '{path}' has default_scope={scope!r}; expected an mmdet or mmseg config")
    init_default_scope(scope)
    backbone = cfg.model.get("backbone")
    if backbone is None or backbone.get("type") not in ("RoPEViT", "RoPESwin"):
        raise ValueError(f"config '{path}': the model's backbone is "
                         f"{None if backbone is None else backbone.get('type')!r}, not RoPEViT / RoPESwin")
    backbone["init_cfg"] = None  # random weights: no download, same cost
    if floor:
        for key in [k for k in backbone if k.startswith("rope_") and k != "rope_position"]:
            backbone.pop(key)
        backbone["rope_type"] = None
        backbone["use_ape" if backbone["type"] == "RoPEViT" else "use_rpb"] = False
    return cfg


def _timm_floor(cls_name: str, kwargs: dict, spec: dict):
    """timm's plain ViT (LayerScale 1e-5, no position embedding, any input size, a cls token) or timm's Swin (window
    7, its relative position bias) of the same width, depth and heads; ``forward_features`` is what is timed."""
    import timm.models.swin_transformer as timm_swin
    import timm.models.vision_transformer as timm_vit

    if "family" in kwargs:
        raise ValueError(f"the 'timm' floor is for the RoPE-ViT / RoPE-Swin sizes, not {spec['arch']}")
    if cls_name == "RoPEViT":
        if spec["layout"] != "global":
            raise ValueError("timm's ViT has no window blocks: the 'timm' floor is for layout 'global'")
        return timm_vit.VisionTransformer(
            img_size=224, patch_size=16, embed_dim=kwargs["embed_dim"], depth=kwargs["depth"],
            num_heads=kwargs["num_heads"], init_values=1e-5, pos_embed="none", dynamic_img_size=True,
            class_token=True, num_classes=0, global_pool="")
    return timm_swin.SwinTransformer(
        img_size=spec["size"], patch_size=4, embed_dim=kwargs["embed_dim"], depths=kwargs["depths"],
        num_heads=kwargs["num_heads"], window_size=7, num_classes=0)


class _Features:
    """Calls a timm model's ``forward_features`` when the row's model is called (the benchmark calls ``model(x)``)."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, x):
        return self.model.forward_features(x)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def build(spec: dict):
    """The model of one benchmark row, on its device, in eval mode (train mode for ``step == 'train'`` rows).

    ``spec``: ``arch``, ``mode``, ``layout``, ``size``, ``device``, ``config`` (a whole-model row), ``compile``,
    ``step``. Our backbones keep their defaults for the cls token: one in global layouts (as timm's floor), none in
    ViTDet layouts.
    """
    import torch

    import ropevit_dense.backbones as backbones

    torch.manual_seed(0)
    if spec.get("config"):
        from mmengine.registry import MODELS

        model = MODELS.build(load_config(spec["config"], floor=spec["mode"] == "none").model)
    else:
        cls_name, kwargs = ARCHS[spec["arch"]]
        if spec["mode"] == "timm":
            model = _Features(_timm_floor(cls_name, kwargs, spec))
        else:
            kwargs = {**kwargs, **MODES[spec["mode"]]}
            if cls_name == "RoPEViT":
                if kwargs.pop("use_rpb", False):
                    raise ValueError(f"position mode '{spec['mode']}' (relative position bias) is for Swin backbones")
                kwargs.update(LAYOUTS[spec["layout"]])
            else:
                if spec["layout"] != "global":
                    raise ValueError("layouts apply to ViT backbones only")
                if kwargs.pop("use_ape", False):
                    raise ValueError(f"position mode '{spec['mode']}' (absolute embedding) is for ViT backbones")
            model = getattr(backbones, cls_name)(**kwargs)
    inner = model.model if isinstance(model, _Features) else model
    inner.train(spec.get("step") == "train").to(spec["device"])
    if spec.get("compile"):
        compiled = torch.compile(inner.forward_features if isinstance(model, _Features) else inner,
                                 backend="inductor", dynamic=False)
        return _Compiled(inner, compiled)
    return model


class _Compiled:
    """A compiled forward with the module it came from (its parameters, ``data_preprocessor``, ...)."""

    def __init__(self, module, compiled) -> None:
        self.module, self.compiled = module, compiled

    def __call__(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.module, name)
