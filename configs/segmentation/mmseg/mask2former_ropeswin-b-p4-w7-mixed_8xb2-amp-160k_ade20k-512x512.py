# Mask2Former, Swin-B (patch 4, window 7) RoPE-Mixed backbone, ADE20k semantic 512 x 512, 160k iterations at batch 16.
# Swin-B at the 224 / window-7 pretraining of the RoPE-Swin checkpoints (the public Mask2Former Swin-B is the
# 384 / window-12 model with 640 crops): crop 512 and drop path 0.3, as Swin-T / S.
_base_ = [
    './_base_/models/mask2former_ropeswin.py', './_base_/datasets/ade20k_mask2former.py',
    './_base_/schedules/schedule_160k_mask2former.py', './_base_/default_runtime.py'
]
# Mask2Former's head classes live in mmdet.
custom_imports = dict(imports=['ropevit_dense.adapters.mmseg', 'mmdet.models'], allow_failed_imports=False)
# Multi-scale test: Mask2Former's semantic outputs are already probabilities (class softmax x mask sigmoid), which
# its own TTA averages as they are; mmseg's SegTTAModel would apply a softmax to them first.
tta_model = dict(type='ProbabilityAverageSegTTAModel')

model = dict(
    backbone=dict(
        embed_dim=128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32),
        window_size=7,
        rope_type='mixed',
        use_rpb=False,
        drop_path_rate=0.3,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_mixed_base_patch4_window7_224/pytorch_model.bin',
            strict=True)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
