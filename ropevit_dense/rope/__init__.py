"""2D rotary position embedding for images: coordinates, frequencies, tables and the one rotation function."""

from .frequencies import axial_frequencies, base_magnitudes, mixed_frequencies
from .grid import POSITION_MODES, grid_coords
from .modules import DEFAULT_THETA, ROPE_TYPES, AxialRoPE, MixedRoPE, check_rope_options
from .rotation import RopeTable, apply_rope, rope_angles, rope_table

__all__ = [
    "DEFAULT_THETA",
    "POSITION_MODES",
    "ROPE_TYPES",
    "AxialRoPE",
    "MixedRoPE",
    "RopeTable",
    "apply_rope",
    "axial_frequencies",
    "base_magnitudes",
    "check_rope_options",
    "grid_coords",
    "mixed_frequencies",
    "rope_angles",
    "rope_table",
]
