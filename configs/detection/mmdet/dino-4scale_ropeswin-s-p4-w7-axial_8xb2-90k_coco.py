# DINO 4-scale, Swin-S (patch 4, window 7) with RoPE-Axial, COCO, 90k iterations at batch 16.
_base_ = [
    './_base_/models/dino-4scale_ropeswin.py', './_base_/datasets/coco_detection_detr.py',
    './_base_/schedules/schedule_90k.py', './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        embed_dim=96,
        depths=(2, 2, 18, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        rope_type='axial',
        use_rpb=False,
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_axial_small_patch4_window7_224/pytorch_model.bin',
            strict=True)),
    neck=dict(in_channels=[192, 384, 768]))
