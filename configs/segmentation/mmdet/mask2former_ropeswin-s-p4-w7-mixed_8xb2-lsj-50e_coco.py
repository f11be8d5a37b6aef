# Mask2Former, Swin-S (patch 4, window 7) RoPE-Mixed backbone, COCO instance segmentation, LSJ 1024, 50 epochs at
# batch 16.
_base_ = ['./_base_/mask2former_ropeswin_8xb2-lsj-50e_coco.py']

model = dict(
    backbone=dict(
        embed_dim=96,
        depths=(2, 2, 18, 2),
        num_heads=(3, 6, 12, 24),
        rope_type='mixed',
        use_rpb=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_mixed_small_patch4_window7_224/pytorch_model.bin',
            strict=True)),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))
