# Cascade Mask R-CNN, ViT-B/16 ViTDet backbone with RoPE-Mixed, COCO, LSJ 1024, 100 epochs at batch 64: the mmdet
# twin of configs/detection/detectron2/cascade_mask_rcnn_vitdet_b_rope_mixed_100ep.py.
_base_ = [
    './_base_/cascade-mask-rcnn_ropevitdet.py', './_base_/coco-instance_lsj-1024_vitdet.py',
    './_base_/schedule_vitdet_lsj-100e.py'
]

model = dict(
    backbone=dict(
        embed_dim=768,
        depth=12,
        num_heads=12,
        rope_type='mixed',
        use_ape=False,
        window_size=14,
        global_block_indexes=(2, 5, 8, 11),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_deit_base_patch16_LS/pytorch_model.bin')),
    neck=dict(in_channels=768))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7, num_layers=12))
