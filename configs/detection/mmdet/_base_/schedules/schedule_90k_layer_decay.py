# detrex's DINO-EVA-02 12-epoch optimisation (projects/dino_eva/configs/dino-eva-02/*.py, RECIPES E): AdamW lr 1e-4,
# betas (0.9, 0.999), weight decay 1e-4 on every parameter (detectron2's get_default_optimizer_params with
# weight_decay_norm=None and no overrides: norms and the position embedding decay too), layer-wise lr decay
# (get_vit_lr_decay_rate: patch / position embedding rate^(depth+1), block i rate^(depth-i), neck and head 1; no
# other backbone factor), full-model gradient clipping at L2 norm 0.1; 90k iterations at batch 16 (8 GPUs x 2), lr
# x0.1 at 82.5k, no warmup. The rate and depth are set per model: 0.7 over 12 blocks (B), 0.8 over 24 (L).
max_iters = 90000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[82500], gamma=0.1)]

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(rule='detectron2', weight_decay_norm=None, layer_decay_rate=0.7, num_layers=12))

auto_scale_lr = dict(base_batch_size=16, enable=False)
