"""ropevit-dense: RoPE-ViT and RoPE-Swin backbones for detection and segmentation.

Rotary position embedding for vision transformers follows Heo et al., "Rotary Position Embedding for Vision
Transformer" (ECCV 2024, https://arxiv.org/abs/2403.13298; classification code: https://github.com/naver-ai/rope-vit).

Importing this package imports torch only: it never imports OpenMMLab or detectron2 and registers nothing.
The framework adapters live in :mod:`ropevit_dense.adapters` and are imported explicitly (e.g. through
``custom_imports`` in an OpenMMLab config).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
