# Mask2Former, ViT-L/16 ViTDet backbone with RoPE-Mixed, COCO instance segmentation, LSJ 1024, 50 epochs at batch
# 16. ViT-L as in ViTDet: global blocks 5, 11, 17, 23, drop path 0.4, layer decay 0.8 over 24 blocks.
_base_ = ['./_base_/mask2former_ropevit_8xb2-lsj-50e_coco.py']

model = dict(
    backbone=dict(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        rope_type='mixed',
        use_ape=False,
        window_size=14,
        global_block_indexes=(5, 11, 17, 23),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_deit_large_patch16_LS/pytorch_model.bin')),
    neck=dict(in_channels=1024))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8, num_layers=24))
