# DINO 4-scale on EVA-02 L in the ViTDet layout, COCO: detrex's DINO-EVA-02-L (RECIPES E,
# projects/dino_eva/configs/dino-eva-02/dino_eva_02_vitdet_l_4attn_1024_lrd0p8_4scale_12ep.py): the Merged-38M MIM
# weights with a 16 x 16 patch embedding (eva02_L_pt_m38m_p14to16), global blocks 5, 11, 17, 23, drop path 0.4, layer
# decay 0.8, LSJ at 1024, 90k iterations at batch 16.
_base_ = ['./dino-4scale_eva02-b16-vitdet-w16_8xb2-lsj-90k_coco.py']

model = dict(
    backbone=dict(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        global_block_indexes=(5, 11, 17, 23),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='hf://Yuxin-CV/EVA-02/eva02/pt/eva02_L_pt_m38m_p14to16.pt')),
    neck=[
        dict(type='RoPESimplePyramid', in_channels=1024, out_channels=256, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[256, 256, 256, 256], kernel_size=1, out_channels=256, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ])

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8, num_layers=24))
