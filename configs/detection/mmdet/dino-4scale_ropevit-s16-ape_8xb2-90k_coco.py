# DINO 4-scale, ViT-S/16 ViTDet backbone with absolute position embedding only (the DeiT-III baseline): the RoPE-Mixed config of the same
# size with another position encoding and its checkpoint.
_base_ = ['./dino-4scale_ropevit-s16-mixed_8xb2-90k_coco.py']

model = dict(
    backbone=dict(
        rope_type=None,
        use_ape=True,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/deit_small_patch16_LS/pytorch_model.bin')))
