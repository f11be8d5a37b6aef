# UperNet, ViT-B/16 RoPE-Mixed backbone (all blocks global), ADE20k 512 x 512, 160k iterations at batch 16, BEiT v2
# recipe.
_base_ = [
    './_base_/models/upernet_ropevit.py', './_base_/datasets/ade20k_upernet.py',
    './_base_/schedules/schedule_160k_upernet.py', './_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        embed_dim=768,
        depth=12,
        num_heads=12,
        rope_type='mixed',
        use_ape=False,
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_deit_base_patch16_LS/pytorch_model.bin')),
    neck=dict(embed_dim=768),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768),
    auxiliary_head=dict(in_channels=768))

optim_wrapper = dict(optimizer=dict(lr=5e-05), paramwise_cfg=dict(layer_decay_rate=0.75, num_layers=12))
