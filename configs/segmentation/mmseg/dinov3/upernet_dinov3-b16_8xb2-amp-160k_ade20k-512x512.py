# UperNet on DINOv3 ViT-B/16 (all blocks global), ADE20k 512 x 512, 160k iterations at batch 16: the BEiT v2 UperNet
# recipe of the RoPE-ViT configs (RECIPES C; lr 5e-5, layer decay 0.75, drop path 0.15). The cls and 4 register
# tokens pass through the blocks and are dropped from the outputs; the outputs are the blocks DINOv3's own dense
# evaluations read (2, 5, 8, 11), with its final norm; RoPE positions as pretrained (each 512 crop normalised to
# [-1, 1]).
_base_ = [
    '../_base_/models/upernet_ropevit.py', '../_base_/datasets/ade20k_upernet.py',
    '../_base_/schedules/schedule_160k_upernet.py', '../_base_/default_runtime.py'
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        family='dinov3',
        embed_dim=768,
        depth=12,
        num_heads=12,
        out_indices=(2, 5, 8, 11),
        drop_path_rate=0.15,
        # gated: accept the DINOv3 licence on the hub page and log in (huggingface-cli login) or set HF_TOKEN
        init_cfg=dict(type='Pretrained', checkpoint='hf://timm/vit_base_patch16_dinov3_qkvb.lvd1689m/model.safetensors')),
    neck=dict(embed_dim=768),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768),
    auxiliary_head=dict(in_channels=768))

# BEiT's parameter rule (rule 'beit'): the register tokens decay like the cls token (3-D, not exempt).
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.75, num_layers=12))
