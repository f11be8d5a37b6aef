# The Swin-T RoPE-Mixed Mask2Former instance segmentation recipe shrunk for a CPU: a 32-wide RoPE-Swin with one
# block per stage (windows of 7, padded tokens as zeros as in the recipe), a 1-layer pixel decoder and a 2-layer
# masked-attention decoder (width 256, FFN 512), 20 queries, 2048 sampled points, LSJ at 128 instead of 1024,
# batch 2, 400 iterations. Everything else - model classes, losses, matcher, augmentation structure, optimizer,
# clipping, schedule shape, box / mask AP evaluation - is the real recipe's. Trains from scratch on the generated
# shapes with polygon masks (python -m ropevit_dense.data coco data/tiny_coco).
_base_ = ['../mask2former_ropeswin-t-p4-w7-mixed_8xb2-lsj-50e_coco.py']

data_root = 'data/tiny_coco/'
image_size = (128, 128)
num_things_classes = 3
metainfo = dict(classes=('square', 'disk', 'triangle'), palette=[(220, 40, 40), (40, 200, 60), (40, 80, 230)])

model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size=image_size, img_pad_value=0, pad_mask=True, mask_pad_value=0,
             pad_seg=False)]),
    backbone=dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0, init_cfg=None),
    panoptic_head=dict(
        in_channels=[32, 64, 128, 256],
        num_things_classes=num_things_classes,
        num_queries=20,
        pixel_decoder=dict(encoder=dict(num_layers=1, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=256)))),
        transformer_decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
        loss_cls=dict(class_weight=[1.0] * num_things_classes + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=num_things_classes),
    train_cfg=dict(num_points=2048),
    test_cfg=dict(max_per_image=20))

train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), resize_type='Resize', keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=(213, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
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

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters, dynamic_intervals=None)
param_scheduler = dict(end=max_iters, milestones=[320, 370])
# from scratch: no pretrained backbone, so the backbone trains at the full learning rate
optim_wrapper = dict(
    optimizer=dict(lr=4e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0, decay_mult=1.0),
                                    'relative_position_bias_table': dict(lr_mult=1.0, decay_mult=0.0),
                                    'rope.freqs': dict(lr_mult=1.0, decay_mult=0.0)}))
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=200, max_keep_ckpts=2))
log_processor = dict(window_size=20)
