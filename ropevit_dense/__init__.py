"""ropevit-dense: RoPE-ViT and RoPE-Swin backbones for detection and segmentation.

Rotary position embedding for vision transformers follows Heo et al., "Rotary Position Embedding for Vision
Transformer" (ECCV 2024, https://arxiv.org/abs/2403.13298; classification code: https://github.com/naver-ai/rope-vit).

Importing this package imports torch and timm only: it never imports OpenMMLab or detectron2 and registers
nothing. The framework adapters live in :mod:`ropevit_dense.adapters` and are imported explicitly (e.g. through
``custom_imports`` in an OpenMMLab config).
"""

__version__ = "0.1.0"

from .backbones import RoPESwin, RoPEViT
from .checkpoints import load_pretrained
from .checkpoints.zoo import PRETRAINED, create_backbone
from .necks import SimplePyramid

__all__ = ["PRETRAINED", "RoPESwin", "RoPEViT", "SimplePyramid", "__version__", "create_backbone", "load_pretrained"]
