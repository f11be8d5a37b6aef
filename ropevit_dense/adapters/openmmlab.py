"""Pieces shared by the mmdet and mmseg adapters (mmengine only): backbone wrappers and the optimizer constructor.

Nothing here registers anything; :mod:`ropevit_dense.adapters.mmdet` and ``.mmseg`` register these classes into
their own framework's registries.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..backbones import RoPESwin, RoPEViT
from ..backbones.lr_decay import vit_lr_scale
from ..checkpoints import allow_mmengine_checkpoints, load_pretrained
from ..necks import SimplePyramid
from ..rope import ROPE_PARAMETER_NAMES

# mmengine's own torch.load calls (test, resume) must accept the checkpoints mmengine writes.
allow_mmengine_checkpoints()


class _PretrainedMixin:
    """``init_cfg=dict(type='Pretrained', checkpoint=<path | URL | hf://...>[, strict=True][, prefix='...'])``
    loads through the core loader; without ``init_cfg`` the core class's own random initialisation applies.

    Put first among the bases: its ``init_weights`` replaces both the core class's (which it calls for training
    from scratch) and ``BaseModule``'s (whose ``Pretrained`` init would read the file with mmengine's loader).
    """

    init_cfg: Optional[dict]

    def _setup_init_cfg(self, init_cfg: Optional[dict]) -> None:
        if init_cfg is not None:
            if not isinstance(init_cfg, dict) or init_cfg.get("type") != "Pretrained" or "checkpoint" not in init_cfg:
                raise ValueError(f"{type(self).__name__} supports init_cfg=dict(type='Pretrained', checkpoint=..., "
                                 f"strict=True) or None, got {init_cfg!r}")
            unknown = set(init_cfg) - {"type", "checkpoint", "strict", "prefix"}
            if unknown:
                raise ValueError(f"unsupported init_cfg keys {sorted(unknown)} for {type(self).__name__}")
        self.init_cfg = init_cfg

    def init_weights(self) -> None:
        cfg = getattr(self, "init_cfg", None)
        if cfg is None:
            # Training from scratch: the core backbone's own initialisation (truncated-normal linears, zero biases,
            # cls token / position embedding). The core constructor calls init_weights() too, which lands here.
            super().init_weights()
        else:
            report = load_pretrained(self, cfg["checkpoint"], strict=cfg.get("strict", True),
                                     prefix=cfg.get("prefix"))
            print_log(str(report), logger="current", level=logging.INFO)
        self._is_init = True


class MMRoPEViT(_PretrainedMixin, RoPEViT, BaseModule):
    """:class:`~ropevit_dense.backbones.RoPEViT` as an OpenMMLab backbone (same arguments, plus ``init_cfg``)."""

    def __init__(self, *, init_cfg: Optional[dict] = None, **kwargs: Any) -> None:
        RoPEViT.__init__(self, **kwargs)
        self._is_init = False
        self._setup_init_cfg(init_cfg)


class MMRoPESwin(_PretrainedMixin, RoPESwin, BaseModule):
    """:class:`~ropevit_dense.backbones.RoPESwin` as an OpenMMLab backbone (same arguments, plus ``init_cfg``)."""

    def __init__(self, *, init_cfg: Optional[dict] = None, **kwargs: Any) -> None:
        RoPESwin.__init__(self, **kwargs)
        self._is_init = False
        self._setup_init_cfg(init_cfg)


class MMSimplePyramid(SimplePyramid, BaseModule):
    """:class:`~ropevit_dense.necks.SimplePyramid` as an OpenMMLab neck."""

    def __init__(self, *, init_cfg: Optional[dict] = None, **kwargs: Any) -> None:
        SimplePyramid.__init__(self, **kwargs)
        self._is_init = False
        self.init_cfg = init_cfg


class RoPEOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with norms always decay-free and an optional layer-wise decay for RoPE-ViT.

    Three differences from ``DefaultOptimWrapperConstructor``:

    * ``norm_decay_mult`` applies to every normalisation layer, also when the parameter matches a ``custom_keys``
      entry. mmengine skips it for such parameters, so ``custom_keys={'backbone': dict(lr_mult=0.1)}`` would
      silently give the backbone's LayerNorms weight decay again.
    * ``layer_decay_rate`` (e.g. 0.7 ViTDet, 0.75 BEiT-B) with ``num_layers`` (the ViT depth) scales the
      learning rate of ``backbone.blocks.i`` (RoPE-Mixed frequencies included) by ``rate ** (num_layers - i)``,
      the patch / position embeddings and cls token by ``rate ** (num_layers + 1)``, everything else by 1
      (:mod:`ropevit_dense.backbones.lr_decay`). mmseg's own constructor only knows BEiT / MAE class names and
      ``layers.i`` block names, hence this one.
    * A ``custom_keys`` entry ``'rope.freqs'`` covers every learned RoPE parameter (``rope.generators`` and
      ``rope.axis_scales`` of LieRE / ComRoPE too), unless those names have entries of their own.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        rate = paramwise_cfg.pop("layer_decay_rate", None)
        num_layers = paramwise_cfg.pop("num_layers", None)
        if rate is not None:
            if num_layers is None:
                raise ValueError(f"{type(self).__name__}: paramwise_cfg.layer_decay_rate needs num_layers")
            if not 0.0 < float(rate) <= 1.0:
                raise ValueError(f"paramwise_cfg.layer_decay_rate must be in (0, 1], got {rate}")
        custom_keys = paramwise_cfg.get("custom_keys")
        if custom_keys and "rope.freqs" in custom_keys:
            paramwise_cfg["custom_keys"] = {**{f"rope.{n}": dict(custom_keys["rope.freqs"]) for n in
                                               ROPE_PARAMETER_NAMES}, **custom_keys}
        self.layer_decay_rate = None if rate is None else float(rate)
        self.num_layers = None if num_layers is None else int(num_layers)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: list, module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
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
            if self.layer_decay_rate is not None:
                scale = vit_lr_scale(name, self.num_layers, self.layer_decay_rate)
                group["lr"] = group.get("lr", self.base_lr) * scale


MODEL_CLASSES = {"RoPEViT": MMRoPEViT, "RoPESwin": MMRoPESwin, "RoPESimplePyramid": MMSimplePyramid}


def register_into(models_registry, constructors_registry) -> None:
    """Register (once) the backbones, the neck and the optimizer constructor into one framework's registries."""
    for name, cls in MODEL_CLASSES.items():
        if models_registry.get(name) is not cls:
            models_registry.register_module(name=name, module=cls)
    name = RoPEOptimWrapperConstructor.__name__
    if constructors_registry.get(name) is not RoPEOptimWrapperConstructor:
        constructors_registry.register_module(name=name, module=RoPEOptimWrapperConstructor)
