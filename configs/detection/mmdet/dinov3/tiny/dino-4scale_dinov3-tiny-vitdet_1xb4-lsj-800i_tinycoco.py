# The DINOv3 DINO recipe shrunk for a CPU: a 4-block 64-wide DINOv3-family backbone (4 register tokens in its
# pretrained layout, dropped here as in every ViTDet layout; windows of 4 tokens, blocks 1 and 3 global), a 2+2-layer
# DINO head, 100 queries, large-scale jitter at 128 x 128. Model classes, the augmentation structure, the optimizer
# rule with layer decay and the schedule shape are the real recipe's; it trains from scratch on the generated shapes
# dataset (python -m ropevit_dense.data coco data/tiny_coco).
_base_ = ['../dino-4scale_dinov3-b16-vitdet-w16_8xb2-lsj-90k_coco.py']

data_root = 'data/tiny_coco/'
dims = 256
image_size = (128, 128)

model = dict(
    num_queries=100,
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size)]),
    backbone=dict(embed_dim=64, depth=4, num_heads=2, window_size=4, global_block_indexes=(1, 3), drop_path_rate=0.0,
                  init_values=1.0, init_cfg=None),
    neck=[
        dict(type='RoPESimplePyramid', in_channels=64, out_channels=dims, scale_factors=(2.0, 1.0, 0.5),
             top_block=True),
        dict(type='ChannelMapper', in_channels=[dims] * 4, kernel_size=1, out_channels=dims, act_cfg=None,
             norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
    ],
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=2 * dims))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=2 * dims))),
    bbox_head=dict(num_classes=3),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(124, 116, 104))),
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
optim_wrapper = dict(optimizer=dict(lr=4e-4), paramwise_cfg=dict(layer_decay_rate=0.9, num_layers=4))
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=500, max_keep_ckpts=2))
log_processor = dict(window_size=20)
