# Mask2Former, ViT-B/16 ViTDet backbone with RoPE-Mixed, COCO panoptic segmentation, LSJ 1024, 50 epochs at batch
# 16.
_base_ = ['./_base_/mask2former_ropevit_8xb2-lsj-50e_coco-panoptic.py']

model = dict(
    backbone=dict(
        embed_dim=768,
        depth=12,
        num_heads=12,
        rope_type='mixed',
        use_ape=False,
        window_size=14,
        global_block_indexes=(2, 5, 8, 11),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_mixed_deit_base_patch16_LS/pytorch_model.bin')),
    neck=dict(in_channels=768))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7, num_layers=12))
