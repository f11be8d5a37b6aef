# UperNet, ViT-S/16 backbone with RoPE-Axial: the RoPE-Mixed config of the same size with another
# position encoding and its checkpoint.
_base_ = ['./upernet_ropevit-s16-mixed_8xb2-amp-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        rope_type='axial',
        use_ape=False,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_axial_deit_small_patch16_LS/pytorch_model.bin')))
