"""Building blocks shared by the backbones."""

from .attention import Attention
from .init import init_linear_and_norm
from .patch_embed import PatchEmbed
from .qkv import QVBiasLinear
from .rel_pos import decomposed_rel_pos_bias, resize_rel_pos
from .window import (
    WINDOW_PADDING_MODES,
    check_window_padding,
    pad_to_multiple,
    padding_key_mask,
    valid_windows,
    window_partition,
    window_unpartition,
)

__all__ = [
    "WINDOW_PADDING_MODES",
    "Attention",
    "check_window_padding",
    "decomposed_rel_pos_bias",
    "PatchEmbed",
    "QVBiasLinear",
    "init_linear_and_norm",
    "pad_to_multiple",
    "padding_key_mask",
    "resize_rel_pos",
    "valid_windows",
    "window_partition",
    "window_unpartition",
]
