"""Mask2Former pieces for the mmdet / mmseg adapters (imports mmdet; registered by those adapters).

Mask2Former (Cheng et al., CVPR 2022, https://github.com/facebookresearch/Mask2Former) trains with mixed precision
but runs its multi-scale deformable-attention pixel decoder in float32: ``MSDeformAttnPixelDecoder.forward_features``
(``mask2former/modeling/pixel_decoder/msdeformattn.py``) is decorated with ``autocast(enabled=False)`` and casts
the backbone features to float, because deformable attention is not reliable in half precision. mmdet's port of the
decoder runs under whatever autocast is active; :class:`FP32MSDeformAttnPixelDecoder` restores the original
behaviour.
"""

from __future__ import annotations

import torch
from mmdet.models.layers import MSDeformAttnPixelDecoder
from torch import Tensor


class FP32MSDeformAttnPixelDecoder(MSDeformAttnPixelDecoder):
    """mmdet's ``MSDeformAttnPixelDecoder`` (same arguments and weights) that always runs in float32.

    Inside an autocast region (``AmpOptimWrapper``, ``torch.autocast``) the whole decoder - input projections,
    the deformable encoder, the FPN-style top-down path and the mask feature convolution - runs with autocast
    switched off on float32 copies of the input maps, as Mask2Former's own decoder does; its outputs are float32.
    The transformer decoder that follows runs under the surrounding autocast again. Outside autocast it is
    identical to the parent class.

    Forward: a list of ``(B, C_i, H_i, W_i)`` maps (any floating dtype) → ``(mask_feature (B, C, H_0, W_0),
    multi_scale_features [(B, C, H_i, W_i), ...])``, float32.
    """

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if not feats:
            raise ValueError(f"{type(self).__name__} needs at least one feature map")
        with torch.autocast(device_type=feats[0].device.type, enabled=False):
            return super().forward([f.float() for f in feats])


def register_into(models_registry) -> None:
    """Register (once) the float32 pixel decoder into one framework's model registry."""
    name = FP32MSDeformAttnPixelDecoder.__name__
    if models_registry.get(name) is not FP32MSDeformAttnPixelDecoder:
        models_registry.register_module(name=name, module=FP32MSDeformAttnPixelDecoder)
