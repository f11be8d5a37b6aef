# DINO 4-scale, ViT-L/16 ViTDet backbone with RoPE-Mixed, COCO, 90k iterations at batch 16.
_base_ = [
    './_base_/models/dino-4scale_ropevit.py', './_base_/datasets/coco_detection_detr.py',
    './_base_/schedules/schedule_90k.py', './_base_/default_runtime.py'
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
    neck=[
        dict(type='RoPESimplePyramid', in_channels=1024, out_channels=256, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[256, 256, 256, 256], kernel_size=1, out_channels=256, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ])

# ViT-L follows detrex's large schedule: 250 warmup iterations from 0.001x, lr x0.1 at 80% of the run (72k).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=90000, by_epoch=False, milestones=[72000], gamma=0.1),
]
