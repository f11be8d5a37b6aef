# Mask2Former, Swin-T (patch 4, window 7) with relative position bias only (the Swin baseline), COCO panoptic
# segmentation: the RoPE-Mixed config of the same size with another position encoding and its checkpoint.
_base_ = ['./mask2former_ropeswin-t-p4-w7-mixed_8xb2-lsj-50e_coco-panoptic.py']

model = dict(
    backbone=dict(
        rope_type=None,
        use_rpb=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth',
            strict=True)))
