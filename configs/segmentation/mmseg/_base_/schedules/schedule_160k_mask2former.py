# Mask2Former ADE20k schedule (RECIPES D.4): AdamW lr 1e-4, weight decay 0.05, eps 1e-8, backbone lr x0.1,
# full-model gradient clipping at L2 norm 0.01, poly decay (power 0.9) to 0 over 160k iterations without warmup,
# batch 16 (8 GPUs x 2), mixed precision. No weight decay on norms (backbone ones included), query / level
# embeddings, relative position bias tables or RoPE frequencies.
max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # RoPEOptimWrapperConstructor: mmengine's default, with norm_decay_mult also applied to parameters matched by
    # custom_keys (else 'backbone' would give the backbone's LayerNorms weight decay).
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            # mmengine applies only the longest matching key: backbone tables repeat lr_mult 0.1
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'relative_position_bias_table': dict(lr_mult=0.1, decay_mult=0.0),
            'rope.freqs': dict(lr_mult=0.1, decay_mult=0.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))

param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=max_iters)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

auto_scale_lr = dict(enable=False, base_batch_size=16)
