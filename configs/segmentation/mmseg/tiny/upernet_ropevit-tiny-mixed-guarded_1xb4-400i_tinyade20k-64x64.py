# The tiny RoPE-Mixed UperNet with the toolkit's data and checkpoint guards (ropevit_dense.adapters.guards):
# a pre-flight check of every training image and label map (RoPEDataCheckHook), images loaded in the frame of
# their label map with damaged samples skipped and named (RoPELoadImageFromFile), label maps checked for size,
# channels and class range (RoPECheckSegMap), and atomic, checked, RNG-resumable checkpoints
# (RoPECheckpointHook). Everything else is the tiny config's.
_base_ = ['./upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py']

custom_imports = dict(imports=['ropevit_dense.adapters.mmseg', 'ropevit_dense.adapters.mmseg_guards'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='RoPECheckpointHook'))
custom_hooks = [dict(type='RoPEDataCheckHook')]

crop_size = (64, 64)
test_scale = (512, 96)
num_classes = 150
train_pipeline = [
    dict(type='RoPELoadImageFromFile', on_error='skip'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RoPECheckSegMap', num_classes=num_classes, on_error='skip'),
    dict(type='RandomResize', scale=test_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='RoPELoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RoPECheckSegMap', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
