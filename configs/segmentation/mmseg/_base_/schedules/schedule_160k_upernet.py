# BEiT v2 UperNet schedule (RECIPES C.4): AdamW, betas (0.9, 0.999), weight decay 0.05, layer-wise lr decay
# (ViT-B 0.75 over 12 blocks: patch embedding rate^13, block i rate^(12-i), neck and heads 1), linear warmup of
# 1500 iterations from 1e-6, then linear (poly 1.0) decay to 0 at 160k; batch 16 (8 GPUs x 2); mixed precision.
# No weight decay on biases, norms, LayerScale gammas, position embeddings, the cls token or RoPE frequencies
# (BEiT exempts every 1-D parameter; RoPE-Mixed frequencies follow their block's lr, RECIPES F).
max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        num_layers=12,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
            'rope.freqs': dict(decay_mult=0.0),
            '.gamma_1': dict(decay_mult=0.0),
            '.gamma_2': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters),
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

auto_scale_lr = dict(enable=False, base_batch_size=16)
