# Mask2Former, Swin-T (patch 4, window 7) with RoPE-Axial, COCO panoptic segmentation: the RoPE-Mixed config of the
# same size with another position encoding and its checkpoint.
_base_ = ['./mask2former_ropeswin-t-p4-w7-mixed_8xb2-lsj-50e_coco-panoptic.py']

model = dict(
    backbone=dict(
        rope_type='axial',
        use_rpb=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='hf://naver-ai/swin_rope_axial_tiny_patch4_window7_224/pytorch_model.bin',
            strict=True)))
