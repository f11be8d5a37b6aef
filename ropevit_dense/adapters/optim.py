"""Optimizer parameter groups for the OpenMMLab configs: mmengine's rules, or the rules of the recipes' originals.

A recipe is only reproduced if every parameter trains with the learning rate and weight decay its original code
gives it, and those codes differ in ways their configs do not show: detectron2's ``get_default_optimizer_params``
(detrex DINO) recognises torch's normalisation classes only, BEiT's ``LayerDecayOptimizerConstructor`` exempts
1-D parameters and biases from weight decay by shape and name, Mask2Former's ``build_optimizer`` exempts
``nn.Embedding`` modules and two table names. :class:`RoPEOptimWrapperConstructor` applies one of these rules
(``paramwise_cfg.rule``) to a model built by mmdet / mmseg, written here from the originals' behaviour.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from typing import Callable, Optional

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from timm.layers import LayerNorm2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..backbones import RoPESwin, RoPEViT
from ..backbones.lr_decay import swin_lr_scale, vit_lr_scale
from ..rope import ROPE_PARAMETER_NAMES

RULES = ("mmengine", "detectron2", "beit", "mask2former")

# The normalisation classes that detectron2's get_default_optimizer_params lists (detectron2/solver/build.py) and
# Mask2Former's build_optimizer repeats (train_net.py), tested with isinstance.
TORCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
               nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)

_COMMON_KEYS = {"rule", "custom_keys", "layer_decay_rate", "num_layers"}
_RULE_KEYS = {
    "mmengine": {"bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "flat_decay_mult",
                 "bypass_duplicate", "dcn_offset_lr_mult"},
    "detectron2": {"weight_decay_norm", "lr_factors"},
    "beit": set(),
    "mask2former": {"weight_decay_norm", "weight_decay_embed", "backbone_multiplier"},
}


def _longest_match(table: dict, name: str) -> Optional[str]:
    """The longest key of ``table`` contained in ``name`` (alphabetical among equals, as mmengine's custom_keys)."""
    for key in sorted(sorted(table), key=len, reverse=True):
        if key in name:
            return key
    return None


class RoPEOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups by one of four rules (``paramwise_cfg.rule``), with optional layer-wise lr decay.

    * ``'mmengine'`` (default): mmengine's ``DefaultOptimWrapperConstructor`` (``custom_keys``,
      ``norm_decay_mult``, ``bias_decay_mult``, ...), except that ``norm_decay_mult`` reaches every normalisation
      layer, also one matched by ``custom_keys`` (mmengine skips it there, so ``custom_keys={'backbone': ...}``
      would give the backbone's LayerNorms weight decay again).
    * ``'detectron2'``: detectron2's ``get_default_optimizer_params`` as detrex calls it. Weight decay is the
      optimizer's for every parameter except in modules of :data:`TORCH_NORMS`, which get ``weight_decay_norm``
      (absolute; None leaves them alone). timm's channel-first ``LayerNorm2d`` (the simple pyramid's) does not
      count: it stands for detectron2's own ``detectron2.layers.LayerNorm``, which that list does not contain,
      so the pyramid's norms of detectron2 / detrex models decay. ``lr_factors`` (``{substring: factor}``, the
      longest key contained in the parameter's full name wins, else 1) plays detrex's ``lr_factor_func``.
    * ``'beit'``: BEiT's ``LayerDecayOptimizerConstructor`` (unilm ``beit2/semantic_segmentation``): no weight
      decay for 1-D parameters and ``*.bias``, the optimizer's for everything else (its name exemption of
      ``pos_embed`` / ``cls_token`` compares bare names with the model's ``backbone.``-prefixed ones and never
      fires, so those decay); layer-wise decay is required.
    * ``'mask2former'``: Mask2Former's ``build_optimizer``: lr x ``backbone_multiplier`` (0.1) for modules whose
      name contains ``backbone``; weight decay 0 for ``relative_position_bias_table`` / ``absolute_pos_embed``,
      ``weight_decay_norm`` (0) for :data:`TORCH_NORMS`, ``weight_decay_embed`` (0) for ``nn.Embedding``.

    With every rule, ``custom_keys`` (longest key contained in the full name) refine the result: for the three
    original rules ``lr_mult`` multiplies the learning rate the rule gave and ``decay_mult``, when present, sets
    the weight decay to ``optimizer.weight_decay * decay_mult``. A ``'rope.freqs'`` entry covers every learned
    RoPE parameter (``rope.generators`` / ``rope.axis_scales`` of LieRE and ComRoPE too) unless those have their
    own entries. ``layer_decay_rate`` with ``num_layers`` then scales learning rates per layer of a RoPE-ViT
    (``num_layers`` = depth) or RoPE-Swin (``num_layers`` = total blocks) at ``model.backbone``
    (:mod:`ropevit_dense.backbones.lr_decay`); mmseg's own constructor only knows BEiT / MAE class names.
    Frozen parameters (``requires_grad=False``) are left out, as every original does.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        name = type(self).__name__
        # kept in paramwise_cfg, so that it is never empty: mmengine would then put every parameter in one group
        # and skip add_params (and with it the layer-wise decay)
        self.rule = paramwise_cfg.setdefault("rule", "mmengine")
        if self.rule not in RULES:
            raise ValueError(f"{name}: paramwise_cfg.rule must be one of {RULES}, got {self.rule!r}")
        unknown = set(paramwise_cfg) - _COMMON_KEYS - _RULE_KEYS[self.rule]
        if unknown:
            raise ValueError(f"{name}: paramwise_cfg keys {sorted(unknown)} are not options of rule {self.rule!r} "
                             f"(valid: {sorted(_COMMON_KEYS | _RULE_KEYS[self.rule])})")
        rate = paramwise_cfg.pop("layer_decay_rate", None)
        num_layers = paramwise_cfg.pop("num_layers", None)
        if rate is not None:
            if num_layers is None:
                raise ValueError(f"{name}: paramwise_cfg.layer_decay_rate needs num_layers")
            if not 0.0 < float(rate) <= 1.0:
                raise ValueError(f"paramwise_cfg.layer_decay_rate must be in (0, 1], got {rate}")
        elif self.rule == "beit":
            raise ValueError(f"{name}: rule 'beit' is a layer-decay rule; set paramwise_cfg.layer_decay_rate and "
                             "num_layers (1.0 for none)")
        custom_keys = paramwise_cfg.get("custom_keys")
        if custom_keys and "rope.freqs" in custom_keys:
            paramwise_cfg["custom_keys"] = {**{f"rope.{n}": dict(custom_keys["rope.freqs"]) for n in
                                               ROPE_PARAMETER_NAMES}, **custom_keys}
        self.layer_decay_rate = None if rate is None else float(rate)
        self.num_layers = None if num_layers is None else int(num_layers)
        self._layer_scale: Optional[Callable[[str], float]] = None
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.rule != "mmengine":
            self._check_original_rule_cfg()

    def _check_original_rule_cfg(self) -> None:
        cfg, name = self.paramwise_cfg, type(self).__name__
        if self.base_wd is None:
            raise ValueError(f"{name}: rule {self.rule!r} needs optimizer.weight_decay")
        for key, entry in cfg.get("custom_keys", {}).items():
            if not isinstance(entry, dict) or set(entry) - {"lr_mult", "decay_mult"}:
                raise ValueError(f"{name}: custom_keys[{key!r}] may only set lr_mult / decay_mult under rule "
                                 f"{self.rule!r}, got {entry!r}")
        factors = cfg.get("lr_factors", {})
        if not isinstance(factors, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in factors.values()):
            raise ValueError(f"{name}: lr_factors must map name substrings to factors >= 0, got {factors!r}")

    # -- layer-wise decay -----------------------------------------------------------------------------------------
    def _make_layer_scale(self, model: nn.Module) -> Optional[Callable[[str], float]]:
        if self.layer_decay_rate is None:
            return None
        backbone = getattr(model, "backbone", None)
        if isinstance(backbone, RoPEViT):
            depth = len(backbone.blocks)
            if self.num_layers != depth:
                raise ValueError(f"paramwise_cfg.num_layers={self.num_layers}, but the RoPE-ViT backbone has "
                                 f"{depth} blocks")
            return partial(vit_lr_scale, depth=depth, decay_rate=self.layer_decay_rate)
        if isinstance(backbone, RoPESwin):
            depths = [len(stage.blocks) for stage in backbone.layers]
            if self.num_layers != sum(depths):
                raise ValueError(f"paramwise_cfg.num_layers={self.num_layers}, but the RoPE-Swin backbone has "
                                 f"{sum(depths)} blocks (depths {tuple(depths)})")
            return partial(swin_lr_scale, depths=depths, decay_rate=self.layer_decay_rate)
        raise ValueError("paramwise_cfg.layer_decay_rate needs a RoPEViT or RoPESwin at model.backbone (their layer "
                         f"ids are known), got {type(backbone).__name__}")

    def __call__(self, model: nn.Module):
        inner = model.module if hasattr(model, "module") else model
        self._layer_scale = self._make_layer_scale(inner)
        return super().__call__(model)

    # -- parameter groups -----------------------------------------------------------------------------------------
    def add_params(self, params: list, module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
        if self.rule != "mmengine":
            if prefix:
                raise ValueError(f"rule {self.rule!r} builds the groups of a whole model; call the constructor on it")
            self._add_original_rule_params(params, module)
            return
        own = {id(p): f"{prefix}.{n}" if prefix else n for n, p in module.named_parameters(recurse=False)}
        start = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        norm_decay_mult = self.paramwise_cfg.get("norm_decay_mult")
        is_norm = isinstance(module, (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm))
        for group in params[start:]:
            name = own.get(id(group["params"][0]))
            if name is None:  # a child's parameter, handled by the recursive call
                continue
            if is_norm and norm_decay_mult is not None:
                group["weight_decay"] = self.base_wd * norm_decay_mult
            if self._layer_scale is not None:
                group["lr"] = group.get("lr", self.base_lr) * self._layer_scale(name)

    def _rule_values(self, module_name: str, module: nn.Module, param_name: str, param: nn.Parameter
                     ) -> tuple[float, float]:
        """(lr factor, weight decay) of one parameter under the configured original rule."""
        cfg, full = self.paramwise_cfg, f"{module_name}.{param_name}" if module_name else param_name
        wd, factor = self.base_wd, 1.0
        if self.rule == "detectron2":
            norm_wd = cfg.get("weight_decay_norm")
            if norm_wd is not None and isinstance(module, TORCH_NORMS) and not isinstance(module, LayerNorm2d):
                wd = norm_wd
            key = _longest_match(cfg.get("lr_factors", {}), full)
            factor = 1.0 if key is None else float(cfg["lr_factors"][key])
        elif self.rule == "beit":
            if param.ndim == 1 or full.endswith(".bias"):
                wd = 0.0
        else:  # mask2former
            if "backbone" in module_name:
                factor = float(cfg.get("backbone_multiplier", 0.1))
            if "relative_position_bias_table" in param_name or "absolute_pos_embed" in param_name:
                wd = 0.0
            if isinstance(module, TORCH_NORMS):
                wd = float(cfg.get("weight_decay_norm", 0.0))
            if isinstance(module, nn.Embedding):
                wd = float(cfg.get("weight_decay_embed", 0.0))
        return factor, wd

    def _add_original_rule_params(self, params: list, model: nn.Module) -> None:
        custom_keys = self.paramwise_cfg.get("custom_keys", {})
        seen: set[int] = set()
        summary: Counter = Counter()
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                full = f"{module_name}.{param_name}" if module_name else param_name
                factor, wd = self._rule_values(module_name, module, param_name, param)
                key = _longest_match(custom_keys, full)
                if key is not None:
                    factor *= float(custom_keys[key].get("lr_mult", 1.0))
                    if "decay_mult" in custom_keys[key]:
                        wd = self.base_wd * float(custom_keys[key]["decay_mult"])
                if self._layer_scale is not None:
                    factor *= self._layer_scale(full)
                params.append({"params": [param], "lr": self.base_lr * factor, "weight_decay": wd})
                summary[(self.base_lr * factor, wd)] += 1
        lines = [f"  lr={lr:.4g} weight_decay={wd:.4g}: {n} parameters" for (lr, wd), n in sorted(summary.items())]
        print_log(f"{type(self).__name__} (rule {self.rule!r}): {len(params)} parameter groups\n" + "\n".join(lines),
                  logger="current", level=logging.INFO)
