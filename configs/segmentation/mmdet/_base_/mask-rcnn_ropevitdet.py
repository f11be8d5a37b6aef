# Mask R-CNN on a RoPE-ViT-B/16 ViTDet backbone, the model of configs/detection/detectron2/common/
# mask_rcnn_vitdet_b_100ep.py (detectron2's projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py with its ViT
# replaced by RoPEViT) built from mmdet parts: window 14 attention in all blocks but 2, 5, 8, 11, padded window
# tokens as zeros (as detectron2's ViT), drop path 0.1, no cls token; the simple pyramid (scales 4, 2, 1, 0.5 plus
# a max-pooled level: strides 4-64, 256 channels, LayerNorm); a 2-conv RPN; a box head of 4 convs + 1 fc and a mask
# head of 4 convs, each conv followed by a channel LayerNorm (RoPELN2d, eps 1e-6), as detectron2's "LN" heads.
# Inputs are padded to 1024 x 1024 with the mean colour in training and testing (detectron2's square_pad=1024).
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']

custom_imports = dict(imports=['ropevit_dense.adapters.mmdet'], allow_failed_imports=False)

norm_cfg = dict(type='RoPELN2d', eps=1e-6, requires_grad=True)
model = dict(
    # every image (at most 1024 after LSJ / the test resize) is padded to 1024 x 1024 after normalisation, i.e.
    # with the mean colour, in training and testing: detectron2's SimpleFeaturePyramid(square_pad=1024)
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
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
