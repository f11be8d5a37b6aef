# UperNet, ViT-B/16 backbone with RoPE-Mixed + absolute position embedding: the RoPE-Mixed config of the same size with another
# position encoding and its checkpoint.
_base_ = ['./upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        rope_type='mixed',
        use_ape=True,
        # BEiT / mmseg: the pretrained table is resized once, when loaded, to the 512 x 512 crops' 32 x 32 grid (plain
        # bicubic) and then learned at that size.
        ape_img_size=512,
        ape_antialias=False,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_ape_deit_base_patch16_LS/pytorch_model.bin')))
