"""RoPE-ViT and RoPE-Swin backbones (framework-agnostic: torch + timm only)."""

from .families import FAMILIES, CheckpointLayout, ViTFamily, resolve_family
from .swin import SWIN_PRESETS, RoPESwin
from .vit import VIT_PRESETS, RoPEViT

__all__ = ["FAMILIES", "SWIN_PRESETS", "VIT_PRESETS", "CheckpointLayout", "RoPESwin", "RoPEViT", "ViTFamily",
           "resolve_family"]
