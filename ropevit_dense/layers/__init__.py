"""Building blocks shared by the backbones."""

from .attention import Attention
from .init import init_linear_and_norm
from .patch_embed import PatchEmbed
from .qkv import QVBiasLinear
from .window import pad_to_multiple, padding_key_mask, valid_windows, window_partition, window_unpartition

__all__ = [
    "Attention",
    "PatchEmbed",
    "QVBiasLinear",
    "init_linear_and_norm",
    "pad_to_multiple",
    "padding_key_mask",
    "valid_windows",
    "window_partition",
    "window_unpartition",
]
