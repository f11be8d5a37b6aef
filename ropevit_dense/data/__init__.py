"""Data helpers: generators of tiny datasets in the real COCO and ADE20k formats."""

from .synthetic import ADE20K_NUM_CLASSES, COCO_SHAPE_CLASSES, make_ade20k, make_coco

__all__ = ["ADE20K_NUM_CLASSES", "COCO_SHAPE_CLASSES", "make_ade20k", "make_coco"]
