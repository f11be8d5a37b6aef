# UperNet, ViT-L/16 RoPE-Mixed backbone (all blocks global), ADE20k 512 x 512, 160k iterations at batch 16, BEiT v2
# recipe.
# ViT-L: blocks 7/11/15/23, lr 4e-5, layer decay 0.9 over 24 blocks, drop path 0.2 (BEiT v2 ViT-L).
_base_ = [
    './_base_/models/upernet_ropevit.py', './_base_/datasets/ade20k_upernet.py',
    './_base_/schedules/schedule_160k_upernet.py', './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        rope_type='mixed',
        use_ape=False,
        out_indices=(7, 11, 15, 23),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_deit_large_patch16_LS/pytorch_model.bin')),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))

optim_wrapper = dict(optimizer=dict(lr=4e-05), paramwise_cfg=dict(layer_decay_rate=0.9, num_layers=24))
