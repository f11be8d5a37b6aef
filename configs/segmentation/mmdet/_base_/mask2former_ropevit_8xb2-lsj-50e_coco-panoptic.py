# Mask2Former on COCO panoptic with a RoPE-ViT in the ViTDet layout: mmdet 3.3's Mask2Former recipe
# (mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py, the file its Swin recipes build on) with a
# plain ViT-B/16 (window 14 attention, global blocks 2, 5, 8, 11, padded window tokens as zeros, drop path 0.1, no
# cls token) and ViTDet's simple pyramid (scales 4, 2, 1, 0.5 of the stride-16 map: strides 4-32, 256 channels,
# LayerNorm) in place of the ResNet. Head, LSJ 1024 data, test, AdamW 1e-4 / weight decay 0.05 / clipping 0.01
# and the 50-epoch schedule are mmdet's. The backbone learning rate follows ViTDet's layer-wise decay (0.7 for
# ViT-B) instead of Mask2Former's flat x0.1 for the backbone: a plain ViT is fine-tuned that way in ViTDet and
# BEiT, and the two together would leave the first blocks at ~1e-7. No weight decay on norms, the absolute
# position embedding, RoPE frequencies, query / level embeddings.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py']

custom_imports = dict(imports=['ropevit_dense.adapters.mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        embed_dim=768,
        depth=12,
        num_heads=12,
        rope_type='mixed',
        use_ape=False,
        window_size=14,
        global_block_indexes=(2, 5, 8, 11),
        window_padding='zero',
        drop_path_rate=0.1),
    neck=dict(type='RoPESimplePyramid', in_channels=768, out_channels=256, scale_factors=(4.0, 2.0, 1.0, 0.5),
              top_block=False),
    panoptic_head=dict(in_channels=[256, 256, 256, 256]))

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    constructor='RoPEOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        layer_decay_rate=0.7,
        num_layers=12,
        custom_keys={
            'backbone.pos_embed': embed_multi,
            'rope.freqs': embed_multi,
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))
