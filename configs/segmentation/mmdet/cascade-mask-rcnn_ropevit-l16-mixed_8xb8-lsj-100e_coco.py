# Cascade Mask R-CNN, ViT-L/16 ViTDet backbone with RoPE-Mixed, COCO, LSJ 1024, 100 epochs at batch 64: the mmdet
# twin of configs/detection/detectron2/cascade_mask_rcnn_vitdet_l_rope_mixed_100ep.py. ViT-L: global blocks 5, 11,
# 17, 23, drop path 0.4, layer decay 0.8 over 24 blocks.
_base_ = [
    './_base_/cascade-mask-rcnn_ropevitdet.py', './_base_/coco-instance_lsj-1024_vitdet.py',
    './_base_/schedule_vitdet_lsj-100e.py'
]

model = dict(
    backbone=dict(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        rope_type='mixed',
        use_ape=False,
        window_size=14,
        global_block_indexes=(5, 11, 17, 23),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_deit_large_patch16_LS/pytorch_model.bin')),
    neck=dict(in_channels=1024))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8, num_layers=24))
