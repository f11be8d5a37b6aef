# Cascade Mask R-CNN on a RoPE-ViT-B/16 ViTDet backbone, the model of configs/detection/detectron2/common/
# cascade_mask_rcnn_vitdet_b_100ep.py from mmdet parts: the backbone, pyramid, RPN and mask head of
# ./mask-rcnn_ropevitdet.py with ViTDet's three cascade box heads (IoU 0.5 / 0.6 / 0.7; 4 LayerNorm convs + 1 fc
# each, class-agnostic boxes, box deltas scaled as detectron2's weights (10, 10, 5, 5), (20, 20, 10, 10),
# (30, 30, 15, 15)). Losses as detectron2's: L1 box regression in the RPN and every stage, stages summed with
# weight 1.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']

custom_imports = dict(imports=['ropevit_dense.adapters.mmdet'], allow_failed_imports=False)

norm_cfg = dict(type='RoPELN2d', eps=1e-6, requires_grad=True)


def _box_head(stds):
    return dict(
        type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256, fc_out_channels=1024,
        roi_feat_size=7, num_classes=80, norm_cfg=norm_cfg, reg_class_agnostic=True,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0))


model = dict(
    data_preprocessor=dict(pad_size_divisor=1024, pad_mask=True),
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        embed_dim=768,
        depth=12,
        num_heads=12,
        rope_type='mixed',
        use_ape=False,
        window_size=14,
        global_block_indexes=(2, 5, 8, 11),
        window_padding='zero',
        drop_path_rate=0.1),
    neck=dict(_delete_=True, type='RoPESimplePyramid', in_channels=768, out_channels=256,
              scale_factors=(4.0, 2.0, 1.0, 0.5), top_block=True),
    rpn_head=dict(num_convs=2, loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        stage_loss_weights=[1.0, 1.0, 1.0],
        bbox_head=[_box_head([0.1, 0.1, 0.2, 0.2]), _box_head([0.05, 0.05, 0.1, 0.1]),
                   _box_head([1 / 30, 1 / 30, 1 / 15, 1 / 15])],
        mask_head=dict(norm_cfg=norm_cfg)))
