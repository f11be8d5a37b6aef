# UperNet on DINOv3 ViT-L/16 (all blocks global), ADE20k 512 x 512, 160k iterations at batch 16: the BEiT v2 ViT-L
# recipe (RECIPES C; lr 4e-5, layer decay 0.9, drop path 0.2); outputs of blocks 4, 11, 17, 23 (DINOv3's choice for
# ViT-L) with its final norm.
_base_ = ['./upernet_dinov3-b16_8xb2-amp-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        out_indices=(4, 11, 17, 23),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained',
                      checkpoint='hf://timm/vit_large_patch16_dinov3_qkvb.lvd1689m/model.safetensors')),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))

optim_wrapper = dict(optimizer=dict(lr=4e-5), paramwise_cfg=dict(layer_decay_rate=0.9, num_layers=24))
