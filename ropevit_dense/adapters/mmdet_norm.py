"""Registers a channels-first LayerNorm into mmdet as ``norm_cfg=dict(type='RoPELN2d')``.

ViTDet's box and mask heads (detectron2 ``conv_norm="LN"``) normalise each position of an NCHW map over its
channels, which mmcv's ``LN`` (``nn.LayerNorm`` over the last axis) does not do. timm's ``LayerNorm2d`` does;
mmcv's ``build_norm_layer`` then builds it wherever mmdet heads take a ``norm_cfg`` (``Shared4Conv1FCBBoxHead``,
``FCNMaskHead``, ``ConvModule``). ``build_norm_layer`` sets ``eps=1e-5`` unless the config gives one, so configs
that mirror detectron2 write ``dict(type='RoPELN2d', eps=1e-6)``. The name carries the project's prefix so it
never collides with another ``LN2d`` (mmdet's ViTDet project registers one).

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmdet', 'ropevit_dense.adapters.mmdet_norm'])
"""

from __future__ import annotations

from mmdet.registry import MODELS
from timm.layers import LayerNorm2d


class RoPELN2d(LayerNorm2d):
    """LayerNorm over the channels of ``(B, C, H, W)`` maps (timm ``LayerNorm2d``), epsilon 1e-6 by default.

    Args:
        num_channels (int): C.
        eps (float): added to the variance. Default: 1e-6 (detectron2's ``LayerNorm``; see above for mmcv).
        affine (bool): learnable weight and bias. Default: True.
    """

    _abbr_ = "ln"  # mmcv names the built layer ``ln`` / ``ln1`` ... as for its own LayerNorm

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, affine=affine)


if MODELS.get("RoPELN2d") is not RoPELN2d:
    MODELS.register_module(name="RoPELN2d", module=RoPELN2d)
