"""Crash-safe checkpoints and data checks for the OpenMMLab adapters, registered into one framework's registries.

:func:`register_guards` puts ``RoPECheckpointHook`` (:mod:`.checkpoint_guard`), ``RoPEDataCheckHook``,
``RoPELoadImageFromFile``, ``RoPECheckSegMap`` (:mod:`.data_guards`) and ``RoPEResourceMonitorHook``
(:mod:`.monitor`) into the given ``HOOKS`` / ``TRANSFORMS`` registries; :mod:`.mmdet_guards` and
:mod:`.mmseg_guards` call it for mmdet and mmseg. Idempotent.
"""

from __future__ import annotations

from .checkpoint_guard import RoPECheckpointHook
from .data_guards import RoPECheckSegMap, RoPEDataCheckHook, RoPELoadImageFromFile
from .monitor import RoPEResourceMonitorHook

GUARD_HOOKS = {"RoPECheckpointHook": RoPECheckpointHook, "RoPEDataCheckHook": RoPEDataCheckHook,
               "RoPEResourceMonitorHook": RoPEResourceMonitorHook}
GUARD_TRANSFORMS = {"RoPELoadImageFromFile": RoPELoadImageFromFile, "RoPECheckSegMap": RoPECheckSegMap}


def register_guards(hooks_registry, transforms_registry) -> None:
    """Register (once) the guard hooks and transforms into one framework's registries."""
    for registry, classes in ((hooks_registry, GUARD_HOOKS), (transforms_registry, GUARD_TRANSFORMS)):
        for name, cls in classes.items():
            if registry.get(name) is not cls:
                registry.register_module(name=name, module=cls)
