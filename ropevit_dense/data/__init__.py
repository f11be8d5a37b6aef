"""Data helpers: generators of tiny datasets in the real COCO, COCO panoptic and ADE20k formats."""

from .synthetic import (
    ADE20K_NUM_CLASSES,
    COCO_PANOPTIC_STUFF_CLASSES,
    COCO_SHAPE_CLASSES,
    make_ade20k,
    make_coco,
    make_coco_panoptic,
)

__all__ = ["ADE20K_NUM_CLASSES", "COCO_PANOPTIC_STUFF_CLASSES", "COCO_SHAPE_CLASSES", "make_ade20k", "make_coco",
           "make_coco_panoptic"]
