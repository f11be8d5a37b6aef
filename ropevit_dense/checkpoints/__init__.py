"""Checkpoint reading (path / URL / hub id), format conversion and strict loading with a key report."""

from .formats import unwrap
from .io import (
    CheckpointError,
    UnsafeCheckpointError,
    allow_mmengine_checkpoints,
    load_file,
    mmengine_safe_globals,
    resolve,
)
from .load import LoadReport, guess_architecture, load_pretrained

__all__ = [
    "LoadReport",
    "guess_architecture",
    "load_pretrained",
    "unwrap",
    "CheckpointError",
    "UnsafeCheckpointError",
    "allow_mmengine_checkpoints",
    "load_file",
    "mmengine_safe_globals",
    "resolve",
]
