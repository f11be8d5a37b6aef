"""2D rotary position embedding for images: coordinates, frequencies, generators, tables and the one rotation
function."""

from .factored import FactoredRopeTable, RopeArg, factored_tables, rotate_factored_
from .frequencies import axial_frequencies, base_magnitudes, mixed_frequencies
from .generators import ComRoPEAP, ComRoPELD, LieRE, commuting_basis, generator_table, skew_from_upper
from .grid import COORDINATE_RULES, POSITION_MODES, Coords, GridCoords, flat_coords, grid_axes, grid_coords
from .modules import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_THETA,
    GENERATOR_ROPE_TYPES,
    PAIR_ROPE_TYPES,
    ROPE_PARAMETER_NAMES,
    ROPE_TYPES,
    SHARED_ROPE_TYPES,
    AxialRoPE,
    MixedRoPE,
    build_layer_rope,
    build_shared_rope,
    check_rope_options,
    is_rope_parameter,
    rope_settings,
)
from .rotation import BlockRopeTable, RopeTable, apply_rope, apply_rope_, rope_angles, rope_table
from .spherical import SphericalRoPE, spherical_blocks, spherical_frequencies

__all__ = [
    "COORDINATE_RULES",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_THETA",
    "GENERATOR_ROPE_TYPES",
    "PAIR_ROPE_TYPES",
    "POSITION_MODES",
    "ROPE_PARAMETER_NAMES",
    "ROPE_TYPES",
    "SHARED_ROPE_TYPES",
    "AxialRoPE",
    "BlockRopeTable",
    "ComRoPEAP",
    "ComRoPELD",
    "Coords",
    "FactoredRopeTable",
    "GridCoords",
    "LieRE",
    "MixedRoPE",
    "RopeArg",
    "RopeTable",
    "SphericalRoPE",
    "apply_rope",
    "apply_rope_",
    "axial_frequencies",
    "base_magnitudes",
    "build_layer_rope",
    "build_shared_rope",
    "check_rope_options",
    "commuting_basis",
    "factored_tables",
    "flat_coords",
    "generator_table",
    "grid_axes",
    "grid_coords",
    "is_rope_parameter",
    "mixed_frequencies",
    "rope_angles",
    "rope_settings",
    "rope_table",
    "rotate_factored_",
    "skew_from_upper",
    "spherical_blocks",
    "spherical_frequencies",
]
