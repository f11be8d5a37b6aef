# Mask2Former on COCO instance segmentation with a RoPE-Swin backbone: mmdet 3.3's recipe
# (mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py) with its Swin replaced.
# Inherited unchanged from mmdet's R-50 file that the Swin recipe itself builds on: the head (pixel decoder with 6
# deformable layers, 9-layer masked-attention decoder, 100 queries, class / mask / dice losses 2 / 5 / 5 on 12544
# points; 80 thing classes, no stuff, instance output only), LSJ 1024 (flip, resize 0.1-2.0, crop 1024, empty
# masks dropped, pad 1024), test at 1333 x 800, box / mask AP, AdamW
# lr 1e-4, weight decay 0.05, gradient clipping 0.01, 368,750 iterations at batch 16 (50 epochs) with lr x0.1 at
# 327,778 and 355,092, fp32. As in the Swin recipe: backbone lr x0.1, no weight decay on norms, relative position
# bias tables, query / level embeddings; here also none on RoPE frequencies (backbone lr x0.1 too).
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py']

custom_imports = dict(imports=['ropevit_dense.adapters.mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RoPESwin',
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        rope_type='mixed',
        use_rpb=False,
        # padded window tokens attend as zeros and every other block is shifted, as mmdet's SwinTransformer
        window_padding='zero',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))

# RoPEOptimWrapperConstructor: mmengine's default, with norm_decay_mult also applied to parameters matched by
# custom_keys, which mmdet's Swin recipe gets by listing every backbone norm as a key of its own.
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
backbone_embed_multi = dict(lr_mult=0.1, decay_mult=0.0)
optim_wrapper = dict(
    constructor='RoPEOptimWrapperConstructor',
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'relative_position_bias_table': backbone_embed_multi,
            'rope.freqs': backbone_embed_multi,
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))
