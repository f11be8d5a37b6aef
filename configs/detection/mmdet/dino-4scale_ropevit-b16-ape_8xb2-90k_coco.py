# DINO 4-scale, ViT-B/16 ViTDet backbone with absolute position embedding only (the DeiT-III baseline), COCO, 90k iterations at batch 16.
_base_ = [
    './_base_/models/dino-4scale_ropevit.py', './_base_/datasets/coco_detection_detr.py',
    './_base_/schedules/schedule_90k.py', './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        embed_dim=768,
        depth=12,
        num_heads=12,
        rope_type=None,
        use_ape=True,
        window_size=14,
        global_block_indexes=(2, 5, 8, 11),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/deit_base_patch16_LS/pytorch_model.bin')),
    neck=[
        dict(type='RoPESimplePyramid', in_channels=768, out_channels=256, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[256, 256, 256, 256], kernel_size=1, out_channels=256, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ])
