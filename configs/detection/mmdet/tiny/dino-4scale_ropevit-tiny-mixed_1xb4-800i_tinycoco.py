# The ViT-S RoPE-Mixed DINO recipe shrunk for a CPU: a 4-block 96-wide RoPE-ViTDet backbone (windows of 7 tokens,
# blocks 1 and 3 global), a 2+2-layer DINO head (width 256, which mmdet's DINO decoder hard-wires through its
# 128-feature sine query embedding; FFN 512), 100 queries, small images. Everything else - model
# classes, augmentation structure, optimizer, schedule shape - is the real recipe's. Trains from scratch on the
# generated shapes dataset (python -m ropevit_dense.data coco data/tiny_coco); `make demo` runs it.
_base_ = ['../dino-4scale_ropevit-s16-mixed_8xb2-90k_coco.py']

data_root = 'data/tiny_coco/'
dims = 256

model = dict(
    num_queries=100,
    backbone=dict(embed_dim=96, depth=4, num_heads=2, window_size=7, global_block_indexes=(1, 3), drop_path_rate=0.0,
                  init_values=1.0, init_cfg=None),
    neck=[
        dict(type='RoPESimplePyramid', in_channels=96, out_channels=dims, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[dims] * 4, kernel_size=1, out_channels=dims, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ],
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=2 * dims))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=2 * dims))),
    bbox_head=dict(num_classes=3),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)))

_scales = [(128, 213), (144, 240), (160, 267)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(112, 600), (128, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(96, 128), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(267, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
metainfo = dict(classes=('square', 'disk', 'triangle'))
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_iters = 800
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[720], gamma=0.1)]
# from scratch: no pretrained backbone, so the backbone and the pyramid that detrex counts with it train at the
# full learning rate; the rest of the recipe's parameter rule (detectron2's) stays.
optim_wrapper = dict(optimizer=dict(lr=4e-4), paramwise_cfg=dict(lr_factors={'backbone': 1.0, 'neck.0.': 1.0}))
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=500, max_keep_ckpts=2))
log_processor = dict(window_size=20)
