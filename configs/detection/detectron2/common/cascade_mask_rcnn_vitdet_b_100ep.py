# Cascade Mask R-CNN on a RoPE-ViT-B/16 ViTDet backbone, COCO, LSJ 1024, 100 epochs: the Mask R-CNN recipe with
# ViTDet's cascade box heads (3 stages at IoU 0.5 / 0.6 / 0.7, each 4 LN convs + 1 fc, class-agnostic boxes).
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import CascadeROIHeads, FastRCNNConvFCHead, FastRCNNOutputLayers

from .mask_rcnn_vitdet_b_100ep import dataloader, get_vit_lr_decay_rate, lr_multiplier, model, optimizer, train

for _key in ("box_head", "box_predictor", "proposal_matcher"):
    model.roi_heads.pop(_key)

_ious = (0.5, 0.6, 0.7)
_box_weights = ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15))
model.roi_heads.update(
    _target_=CascadeROIHeads,
    box_heads=[
        L(FastRCNNConvFCHead)(
            input_shape=ShapeSpec(channels=256, height=7, width=7),
            conv_dims=[256] * 4,
            fc_dims=[1024],
            conv_norm="LN",
        )
        for _ in _ious
    ],
    box_predictors=[
        L(FastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=1024),
            box2box_transform=L(Box2BoxTransform)(weights=weights),
            num_classes="${...num_classes}",
            test_score_thresh=0.05,
            cls_agnostic_bbox_reg=True,
        )
        for weights in _box_weights
    ],
    proposal_matchers=[
        L(Matcher)(thresholds=[iou], labels=[0, 1], allow_low_quality_matches=False) for iou in _ious
    ],
)
