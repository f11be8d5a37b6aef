"""mmseg adapter: registers the RoPE backbones and the optimizer constructor into mmseg's own registries.

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmseg'], allow_failed_imports=False)
    model = dict(backbone=dict(type='RoPEViT', out_indices=(3, 5, 7, 11), ...),
                 neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5]), ...)

Registered names: ``RoPEViT``, ``RoPESwin`` in ``mmseg.registry.MODELS``; ``RoPEOptimWrapperConstructor`` in
``mmseg.registry.OPTIM_WRAPPER_CONSTRUCTORS`` (layer-wise decay that knows our ``blocks.i`` naming; mmseg's own
``LayerDecayOptimizerConstructor`` only handles BEiT / MAE class names and ``layers.i``). mmseg's registries are
separate from mmdet's; importing both adapters registers the same classes into each. Idempotent.
"""

from __future__ import annotations

from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from .openmmlab import register_into

register_into(MODELS, OPTIM_WRAPPER_CONSTRUCTORS)
