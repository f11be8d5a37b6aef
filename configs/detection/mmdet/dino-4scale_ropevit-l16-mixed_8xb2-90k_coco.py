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

# ViT-L follows detrex's large schedule (dino_vitdet_large_4scale_12ep.py): WarmupParamScheduler over
# MultiStepParamScheduler(values=[1.0, 0.1], milestones=[300000, 375000]) with warmup_length=250/90000 and
# warmup_factor=0.001. fvcore scales the milestones to the 90k run, so lr drops x0.1 at iteration 72000 (80%);
# the warmup factor is 0.001 + 0.999 * t / 250 for t < 250. mmengine's LinearLR reaches end_factor at
# t = end - begin - 1, hence end=251.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=251),
    dict(type='MultiStepLR', begin=0, end=90000, by_epoch=False, milestones=[72000], gamma=0.1),
]
