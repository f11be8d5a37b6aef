# The ViT-B RoPE-Mixed UperNet recipe shrunk for a CPU: a 4-block 64-wide all-global RoPE-ViT (outputs of every
# block), Feature2Pyramid, a 64-channel UPerHead and a 32-channel auxiliary FCN head, 64 x 64 crops of small
# images. Model classes, augmentation structure, slide inference, multi-scale + flip test, optimizer constructor
# and schedule shape are the real recipe's; it trains from scratch (no layer decay, short warmup) and in fp32
# with the plain OptimWrapper, because mmengine's AmpOptimWrapper needs a GPU.
# Data: python -m ropevit_dense.data ade20k data/tiny_ade20k
_base_ = ['../upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py']

data_root = 'data/tiny_ade20k'
crop_size = (64, 64)
dims = 64
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(embed_dim=dims, depth=4, num_heads=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0,
                  init_values=1.0, init_cfg=None),
    neck=dict(embed_dim=dims),
    decode_head=dict(in_channels=[dims] * 4, channels=dims),
    auxiliary_head=dict(in_channels=dims, channels=32),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(43, 43)))

test_scale = (512, 96)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=test_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
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
# the base's SETR-style short sides, for a test scale of 96: max(96, 96 r)
tta_short_sides = [max(test_scale[1], int(test_scale[1] * r)) for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(1 << 20, s), keep_ratio=True) for s in tta_short_sides],
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
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    # the recipe's BEiT parameter rule; from scratch, so no layer decay (rate 1.0)
    paramwise_cfg=dict(rule='beit', layer_decay_rate=1.0, num_layers=4, custom_keys={'rope.freqs': dict(decay_mult=0.0)}))
# the recipe's shape: a 20-iteration warmup multiplying a linear decay over the whole run
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=21),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=200, max_keep_ckpts=2))
