"""Pieces shared by the mmdet and mmseg adapters (mmengine only): backbone wrappers and the optimizer constructor
(:mod:`ropevit_dense.adapters.optim`, re-exported here).

Nothing here registers anything; :mod:`ropevit_dense.adapters.mmdet` and ``.mmseg`` register these classes into
their own framework's registries.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d

from ..backbones import RoPESwin, RoPEViT
from ..checkpoints import allow_mmengine_checkpoints, load_pretrained
from ..necks import SimplePyramid
from .optim import RoPEOptimWrapperConstructor

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


class RoPELN2d(LayerNorm2d):
    """LayerNorm over the channels of ``(B, C, H, W)`` maps (timm ``LayerNorm2d``): ``norm_cfg=dict(type="RoPELN2d")``.

    ViTDet's box and mask heads (detectron2 ``conv_norm="LN"``) normalise each position of an NCHW map over its
    channels, which mmcv's ``LN`` (over the last axis) does not do. mmcv's ``build_norm_layer`` passes ``eps=1e-5``
    unless the config gives one, so configs mirroring detectron2 write ``dict(type='RoPELN2d', eps=1e-6)``. The
    project prefix keeps it apart from other ``LN2d`` registrations (mmdet's ViTDet project has one).

    Args:
        num_channels (int): C.
        eps (float): added to the variance. Default: 1e-6 (detectron2's ``LayerNorm``).
        affine (bool): learnable weight and bias. Default: True.
    """

    _abbr_ = "ln"  # mmcv names the built layer ``ln`` / ``ln1`` ... as for its own LayerNorm

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, affine=affine)


MODEL_CLASSES = {"RoPEViT": MMRoPEViT, "RoPESwin": MMRoPESwin, "RoPESimplePyramid": MMSimplePyramid,
                 "RoPELN2d": RoPELN2d}


def register_into(models_registry, constructors_registry) -> None:
    """Register (once) the backbones, the neck, the channel LayerNorm and the optimizer constructor into one
    framework's registries."""
    for name, cls in MODEL_CLASSES.items():
        if models_registry.get(name) is not cls:
            models_registry.register_module(name=name, module=cls)
    name = RoPEOptimWrapperConstructor.__name__
    if constructors_registry.get(name) is not RoPEOptimWrapperConstructor:
        constructors_registry.register_module(name=name, module=RoPEOptimWrapperConstructor)
