"""mmdet adapter: registers the RoPE backbones, the simple pyramid and the layer-decay constructor into mmdet.

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmdet'], allow_failed_imports=False)
    model = dict(backbone=dict(type='RoPEViT', ...), neck=[dict(type='RoPESimplePyramid', ...), ...])

Registered names: ``RoPEViT``, ``RoPESwin`` (backbones), ``RoPESimplePyramid`` (neck) in ``mmdet.registry.MODELS``;
``RoPEOptimWrapperConstructor`` in ``mmdet.registry.OPTIM_WRAPPER_CONSTRUCTORS``. Registration is
idempotent (re-importing, or importing after the mmseg adapter, is fine).
"""

from __future__ import annotations

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from .openmmlab import register_into

register_into(MODELS, OPTIM_WRAPPER_CONSTRUCTORS)
