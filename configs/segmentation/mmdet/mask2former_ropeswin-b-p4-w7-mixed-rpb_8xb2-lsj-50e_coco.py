# Mask2Former, Swin-B (patch 4, window 7) with RoPE-Mixed + relative position bias, COCO instance segmentation: the
# RoPE-Mixed config of the same size with another position encoding and its checkpoint. No RoPE-Mixed + RPB Swin
# checkpoint is published: start from the RoPE-Mixed one; the relative position bias tables are new (strict=False;
# the load report lists them as missing).
_base_ = ['./mask2former_ropeswin-b-p4-w7-mixed_8xb2-lsj-50e_coco.py']

model = dict(
    backbone=dict(
        rope_type='mixed',
        use_rpb=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_mixed_base_patch4_window7_224/pytorch_model.bin',
            strict=False)))
