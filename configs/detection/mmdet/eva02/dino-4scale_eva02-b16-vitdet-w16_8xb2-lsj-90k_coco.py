# DINO 4-scale on EVA-02 B in the ViTDet layout, COCO: detrex's DINO-EVA-02-B (RECIPES E,
# projects/dino_eva/configs/dino-eva-02/dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py). The MIM weights with
# the patch embedding resampled to 16 x 16 (eva02_B_pt_in21k_p14to16), a 14 x 14 APE (224 / 16) resized to each
# input, RoPE interpolated onto the 16 x 16 pretraining grid (each 16-token window maps onto it exactly, the global
# blocks step 1/4 at 1024); LSJ at 1024, global blocks 2, 5, 8, 11, drop path 0.1, layer decay 0.7, 90k iterations.
_base_ = [
    '../_base_/models/dino-4scale_ropevit.py', '../_base_/datasets/coco_detection_lsj_1024.py',
    '../_base_/schedules/schedule_90k_layer_decay.py', '../_base_/default_runtime.py'
]

model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024))]),
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        family='eva02',
        embed_dim=768,
        depth=12,
        num_heads=12,
        patch_size=16,
        pretrain_img_size=256,  # RoPE reference grid: 16 x 16 tokens, as EVA-02 was pretrained (224 / 14)
        ape_img_size=224,  # the APE table of detrex's EVA02_ViT (pretrain_img_size 224, patch 16): 14 x 14
        window_size=16,
        global_block_indexes=(2, 5, 8, 11),
        window_padding='zero',  # as detectron2's ViT (and EVA-02's): padding tokens attend as keys
        ape_antialias=False,  # detectron2 / EVA-02 get_abs_pos: plain bicubic
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='hf://Yuxin-CV/EVA-02/eva02/pt/eva02_B_pt_in21k_p14to16.pt')),
    neck=[
        dict(type='RoPESimplePyramid', in_channels=768, out_channels=256, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[256, 256, 256, 256], kernel_size=1, out_channels=256, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ])

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7, num_layers=12))
