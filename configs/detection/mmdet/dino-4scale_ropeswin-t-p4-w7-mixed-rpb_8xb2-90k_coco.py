# DINO 4-scale, Swin-T (patch 4, window 7) with RoPE-Mixed + relative position bias, COCO, 90k iterations at batch 16.
# No RoPE-Mixed + RPB Swin checkpoint is published: start from the RoPE-Mixed one; the relative
# position bias tables are new (strict=False; the load report lists them as missing).
_base_ = [
    './_base_/models/dino-4scale_ropeswin.py', './_base_/datasets/coco_detection_detr.py',
    './_base_/schedules/schedule_90k.py', './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        rope_type='mixed',
        use_rpb=True,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_mixed_tiny_patch4_window7_224/pytorch_model.bin',
            strict=False)),
    neck=dict(in_channels=[192, 384, 768]))
