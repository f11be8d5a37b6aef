# ADE20k (150 classes) with the Mask2Former semantic pipeline (RECIPES D.3): shortest edge drawn from
# {256, 307, ..., 1024} (long side <= 2048), 512 x 512 crop with no category-area constraint (cat_max_ratio 1.0;
# mmseg's own Mask2Former config uses 0.75), photometric distortion (= detectron2's ColorAugSSD), flip, and padding
# of smaller crops to 512 x 512 with grey 128 before normalisation (labels 255), as Mask2Former's semantic dataset
# mapper (mmseg's data preprocessor alone would pad the normalised image with 0, the mean colour); test at short
# side 512 (long side <= 2048), whole image.
_base_ = ['./ade20k_upernet.py']

crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomChoiceResize', scales=[int(512 * x * 0.1) for x in range(5, 21)],
         resize_type='ResizeShortestEdge', max_size=2048),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size, pad_val=dict(img=(128, 128, 128), seg=255)),
    dict(type='PackSegInputs'),
]
# Mask2Former's multi-scale + flip test: absolute shortest edges 256...896, long side <= 3584, whole image.
tta_short_sides = [256, 384, 512, 640, 768, 896]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='ResizeShortestEdge', scale=s, max_size=3584) for s in tta_short_sides],
            [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
             dict(type='RandomFlip', prob=1.0, direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
