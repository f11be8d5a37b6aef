# Mask2Former, ViT-B/16 ViTDet backbone with RoPE-Axial, COCO instance segmentation: the RoPE-Mixed config of the
# same size with another position encoding and its checkpoint.
_base_ = ['./mask2former_ropevit-b16-mixed_8xb2-lsj-50e_coco.py']

model = dict(
    backbone=dict(
        rope_type='axial',
        use_ape=False,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_axial_deit_base_patch16_LS/pytorch_model.bin')))
