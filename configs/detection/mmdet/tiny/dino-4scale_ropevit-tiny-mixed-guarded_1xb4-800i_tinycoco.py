# The tiny RoPE-Mixed DINO with the toolkit's data and checkpoint guards (ropevit_dense.adapters.guards):
# a pre-flight check of every training file (RoPEDataCheckHook), images loaded in the frame their json size
# describes with damaged samples skipped and named (RoPELoadImageFromFile), and atomic, checked, RNG-resumable
# checkpoints (RoPECheckpointHook). Everything else is the tiny config's.
_base_ = ['./dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py']

custom_imports = dict(imports=['ropevit_dense.adapters.mmdet', 'ropevit_dense.adapters.mmdet_guards'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='RoPECheckpointHook'))
custom_hooks = [dict(type='RoPEDataCheckHook')]

_scales = [(128, 213), (144, 240), (160, 267)]
train_pipeline = [
    dict(type='RoPELoadImageFromFile', on_error='skip'),
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
    dict(type='RoPELoadImageFromFile'),
    dict(type='Resize', scale=(267, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
