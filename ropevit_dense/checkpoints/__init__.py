"""Checkpoint reading (path / URL / hub id), format conversion and strict loading with a key report."""

from .io import (
    CheckpointError,
    UnsafeCheckpointError,
    allow_mmengine_checkpoints,
    load_file,
    mmengine_safe_globals,
    resolve,
)

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "allow_mmengine_checkpoints",
    "load_file",
    "mmengine_safe_globals",
    "resolve",
]
