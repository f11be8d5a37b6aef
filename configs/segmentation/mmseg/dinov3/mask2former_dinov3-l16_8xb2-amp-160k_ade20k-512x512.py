# Mask2Former (semantic) on DINOv3 ViT-L/16, ADE20k 512 x 512, 160k iterations at batch 16: the Mask2Former recipe
# of the RoPE-Swin configs (RECIPES D: AdamW 1e-4, weight decay 0.05, backbone lr x0.1, clip 0.01, poly 0.9, drop
# path 0.3) with the all-global ViT turned into strides 4 / 8 / 16 / 32 by Feature2Pyramid (deconv x2, deconv,
# identity, max-pool) from blocks 4, 11, 17, 23 (DINOv3's choice for ViT-L, with its final norm). Registers pass
# through the blocks and are dropped from the outputs.
_base_ = [
    '../_base_/models/mask2former_ropeswin.py', '../_base_/datasets/ade20k_mask2former.py',
    '../_base_/schedules/schedule_160k_mask2former.py', '../_base_/default_runtime.py'
]
# Mask2Former's head classes live in mmdet.
custom_imports = dict(imports=['ropevit_dense.adapters.mmseg', 'mmdet.models'], allow_failed_imports=False)
# Mask2Former's semantic outputs are probabilities already: average them as they are in the multi-scale test.
tta_model = dict(type='ProbabilityAverageSegTTAModel')

model = dict(
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        family='dinov3',
        embed_dim=1024,
        depth=24,
        num_heads=16,
        out_indices=(4, 11, 17, 23),
        drop_path_rate=0.3,
        # gated: accept the DINOv3 licence on the hub page and log in (huggingface-cli login) or set HF_TOKEN
        init_cfg=dict(type='Pretrained',
                      checkpoint='hf://timm/vit_large_patch16_dinov3_qkvb.lvd1689m/model.safetensors')),
    neck=dict(type='Feature2Pyramid', embed_dim=1024, rescales=[4, 2, 1, 0.5],
              norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024]))

# Mask2Former's rule has no entry for a ViT's cls / register tokens: they take no weight decay, like the position
# tables it exempts, and the backbone's lr.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'register_tokens': dict(decay_mult=0.0),
                                                     'cls_token': dict(decay_mult=0.0)}))
