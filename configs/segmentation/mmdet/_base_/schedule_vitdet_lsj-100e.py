# ViTDet's 100-epoch schedule (configs/detection/detectron2/common/mask_rcnn_vitdet_b_100ep.py): 184,375 iterations
# at batch 64, linear warm-up from 0.001 over 250 iterations, lr x0.1 at 163,889 and 177,546; AdamW lr 1e-4, betas
# (0.9, 0.999), weight decay 0.1 (none on norms, the absolute position embedding and RoPE frequencies), layer-wise
# lr decay 0.7 over the 12 blocks (ViT-L: 0.8 over 24), no gradient clipping, mixed precision. Evaluation and
# checkpoints every 5,000 iterations. Runtime (hooks, visualizer, logging) from mmdet's default.
_base_ = ['mmdet::_base_/default_runtime.py']

max_iters = 184375
interval = 5000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval,
                 dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

no_decay = dict(decay_mult=0.0)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(norm_decay_mult=0.0, layer_decay_rate=0.7, num_layers=12,
                       custom_keys={'backbone.pos_embed': no_decay, 'rope.freqs': no_decay}))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[163889, 177546], gamma=0.1),
]

default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, save_last=True, interval=interval,
                                     max_keep_ckpts=3))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=64)
