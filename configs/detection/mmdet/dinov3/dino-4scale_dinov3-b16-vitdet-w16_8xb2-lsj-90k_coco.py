# DINO 4-scale on DINOv3 ViT-B/16 in the ViTDet layout, COCO, EVA-02's detection recipe (detrex DINO-EVA-02-B,
# RECIPES E): LSJ at 1024, windows of 16 tokens (DINOv3's 256-pixel pretraining crops) with global blocks 2, 5, 8, 11,
# drop path 0.1, layer decay 0.7, 90k iterations at batch 16. RoPE positions as pretrained ('interpolate': each window
# and the global grid normalised to [-1, 1]); the final norm of DINOv3 is applied to the output (its dense protocol).
_base_ = [
    '../_base_/models/dino-4scale_ropevit.py', '../_base_/datasets/coco_detection_lsj_1024.py',
    '../_base_/schedules/schedule_90k_layer_decay.py', '../_base_/default_runtime.py'
]

model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024))]),
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        family='dinov3',
        embed_dim=768,
        depth=12,
        num_heads=12,
        window_size=16,
        global_block_indexes=(2, 5, 8, 11),
        window_padding='zero',  # as detectron2's ViT (and EVA-02's): padding tokens attend as keys
        drop_path_rate=0.1,
        # gated: accept the DINOv3 licence on the hub page and log in (huggingface-cli login) or set HF_TOKEN
        init_cfg=dict(type='Pretrained', checkpoint='hf://timm/vit_base_patch16_dinov3_qkvb.lvd1689m/model.safetensors')),
    neck=[
        dict(type='RoPESimplePyramid', in_channels=768, out_channels=256, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[256, 256, 256, 256], kernel_size=1, out_channels=256, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ])

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7, num_layers=12))
