# Mask2Former, Swin-B (patch 4, window 7) RoPE-Mixed backbone, COCO instance segmentation, LSJ 1024, 50 epochs at
# batch 16. Swin-B at the 224 / window-7 pretraining of the RoPE-Swin checkpoints (mmdet's Swin-B recipe is the 384
# / window-12 model); everything else as Swin-T / S. mmdet has no Swin-B instance config: the Swin-S one with the
# Swin-B backbone.
_base_ = ['./_base_/mask2former_ropeswin_8xb2-lsj-50e_coco.py']

model = dict(
    backbone=dict(
        embed_dim=128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32),
        rope_type='mixed',
        use_rpb=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_mixed_base_patch4_window7_224/pytorch_model.bin',
            strict=True)),
    panoptic_head=dict(in_channels=[128, 256, 512, 1024]))
