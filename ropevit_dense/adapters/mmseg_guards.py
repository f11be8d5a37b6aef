"""Registers the checkpoint and data guards (:mod:`.guards`) into mmseg's ``HOOKS`` and ``TRANSFORMS``.

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmseg', 'ropevit_dense.adapters.mmseg_guards'],
                          allow_failed_imports=False)
    default_hooks = dict(checkpoint=dict(type='RoPECheckpointHook', by_epoch=False, interval=16000))
    custom_hooks = [dict(type='RoPEDataCheckHook')]
    train_pipeline = [dict(type='RoPELoadImageFromFile', on_error='skip'),
                      dict(type='LoadAnnotations', reduce_zero_label=True),
                      dict(type='RoPECheckSegMap', num_classes=150, on_error='skip'), ...]
"""

from __future__ import annotations

from mmseg.registry import HOOKS, TRANSFORMS

from .guards import register_guards

register_guards(HOOKS, TRANSFORMS)
