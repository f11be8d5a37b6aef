"""mmdet adapter: registers the RoPE backbones, the simple pyramid, the optimizer constructor and the float32
Mask2Former pixel decoder into mmdet.

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmdet'], allow_failed_imports=False)
    model = dict(backbone=dict(type='RoPEViT', ...), neck=[dict(type='RoPESimplePyramid', ...), ...])

Registered names: ``RoPEViT``, ``RoPESwin`` (backbones), ``RoPESimplePyramid`` (neck) and
``FP32MSDeformAttnPixelDecoder`` (Mask2Former's pixel decoder run in float32 under mixed precision, as the original)
in ``mmdet.registry.MODELS``; ``RoPEOptimWrapperConstructor`` in ``mmdet.registry.OPTIM_WRAPPER_CONSTRUCTORS``.
Registration is idempotent (re-importing, or importing after the mmseg adapter, is fine).
"""

from __future__ import annotations

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from . import mask2former
from .openmmlab import register_into

register_into(MODELS, OPTIM_WRAPPER_CONSTRUCTORS)
mask2former.register_into(MODELS)
