"""RoPE-ViT and RoPE-Swin backbones (framework-agnostic: torch + timm only)."""

from .swin import SWIN_PRESETS, RoPESwin
from .vit import VIT_PRESETS, RoPEViT

__all__ = ["SWIN_PRESETS", "VIT_PRESETS", "RoPESwin", "RoPEViT"]
