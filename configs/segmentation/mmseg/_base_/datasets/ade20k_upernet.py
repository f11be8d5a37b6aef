# ADE20k (150 classes) with the BEiT v2 UperNet pipeline (RECIPES C.3): random resize of (2048, 512) by 0.5-2.0,
# 512 x 512 crop (at most 75% one class), flip, photometric distortion; test at short side 512 (long side <= 2048),
# sliding 512 windows with stride 341 (in the model's test_cfg).
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]

# Multi-scale + flip test of BEiT / SETR: ratios r of the (2048, 512) test scale, where the short side becomes
# max(512, 512 * r) with no cap on the long side (SETR_Resize), i.e. short sides 512, 512, 512, 640, 768, 896.
# mmseg's stock tta_pipeline would instead rescale the original image by r. `Resize(scale=(huge, s),
# keep_ratio=True)` fits the image into huge x s, which sets the short side to exactly s.
tta_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_short_sides = [max(crop_size[0], int(crop_size[0] * r)) for r in tta_ratios]
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
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
