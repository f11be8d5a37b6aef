# The Swin-T RoPE-Mixed Mask2Former recipe shrunk for a CPU: a 32-wide RoPE-Swin with two blocks (plain and shifted
# windows of 4 tokens) in each of its four stages, the deformable-attention pixel decoder and the masked-attention
# decoder at width 64 (2 + 3 layers, 20 queries, 1024 sampled points), 64 x 64 crops of small images. Model classes,
# losses, matcher, augmentation structure, optimizer constructor and schedule shape are the real recipe's; it trains
# from scratch (backbone at the full learning rate) and in fp32 with the plain OptimWrapper, because mmengine's
# AmpOptimWrapper needs a GPU.
# Data: python -m ropevit_dense.data ade20k data/tiny_ade20k
_base_ = ['../mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py']

data_root = 'data/tiny_ade20k'
crop_size = (64, 64)
dims = 64
num_classes = 150

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4, drop_path_rate=0.0,
                  init_cfg=None),
    decode_head=dict(
        in_channels=[32, 64, 128, 256],
        feat_channels=dims,
        out_channels=dims,
        num_queries=20,
        pixel_decoder=dict(
            encoder=dict(
                num_layers=2,
                layer_cfg=dict(self_attn_cfg=dict(embed_dims=dims, num_heads=4),
                               ffn_cfg=dict(embed_dims=dims, feedforward_channels=2 * dims))),
            positional_encoding=dict(num_feats=dims // 2)),
        positional_encoding=dict(num_feats=dims // 2),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(self_attn_cfg=dict(embed_dims=dims, num_heads=4),
                           cross_attn_cfg=dict(embed_dims=dims, num_heads=4),
                           ffn_cfg=dict(embed_dims=dims, feedforward_channels=2 * dims))),
        train_cfg=dict(num_points=1024)))

test_scale = (512, 96)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomChoiceResize', scales=[int(96 * x * 0.1) for x in range(5, 21)],
         resize_type='ResizeShortestEdge', max_size=384),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# the base's absolute short sides (256 ... 896 for a 512 test scale), scaled to a test scale of 96
tta_short_sides = [48, 72, 96, 120, 144, 168]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='ResizeShortestEdge', scale=s, max_size=672) for s in tta_short_sides],
            [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
             dict(type='RandomFlip', prob=1.0, direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=4e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            # from scratch: the backbone trains at the full learning rate
            'backbone': dict(lr_mult=1.0, decay_mult=1.0),
            'relative_position_bias_table': dict(lr_mult=1.0, decay_mult=0.0),
            'rope.freqs': dict(lr_mult=1.0, decay_mult=0.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=max_iters)]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=200, max_keep_ckpts=2, save_best=None))
