# detrex's 12-epoch DINO schedule (RECIPES A.4): 90k iterations at batch 16 (8 GPUs x 2), lr x0.1 at 82.5k, no
# warmup; AdamW 1e-4, weight decay 1e-4, full-model grad clip 0.1; backbone lr x0.1; no weight decay on norms.
max_iters = 90000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[82500], gamma=0.1)]

optim_wrapper = dict(
    type='OptimWrapper',
    # RoPEOptimWrapperConstructor: mmengine's default, plus norm_decay_mult also for params matched by custom_keys
    # (else 'backbone' would give the backbone's LayerNorms weight decay), plus optional layer-wise decay for ViTs
    # (paramwise_cfg.layer_decay_rate / num_layers).
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            # mmengine applies only the longest matching key: backbone position tables repeat lr_mult 0.1
            'backbone': dict(lr_mult=0.1),
            'backbone.pos_embed': dict(lr_mult=0.1, decay_mult=0.0),
            'rope.freqs': dict(lr_mult=0.1, decay_mult=0.0),
            'relative_position_bias_table': dict(lr_mult=0.1, decay_mult=0.0),
        }))

auto_scale_lr = dict(base_batch_size=16, enable=False)
