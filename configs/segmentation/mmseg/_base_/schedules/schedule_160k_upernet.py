# BEiT v2 UperNet schedule (RECIPES C.4; unilm beit2/semantic_segmentation/configs/beit/upernet/
# upernet_beit_base_12_512_slide_160k_ade20k.py): AdamW, betas (0.9, 0.999), weight decay 0.05, layer-wise lr decay
# (ViT-B 0.75 over 12 blocks), batch 16 (8 GPUs x 2), mixed precision, no gradient clipping, 160k iterations;
# mmcv's poly decay (power 1.0, min_lr 0) over the whole run with a linear warmup of 1500 iterations from 1e-6.
max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05),
    # BEiT's LayerDecayOptimizerConstructor (mmcv_custom/layer_decay_optimizer_constructor.py): no weight decay for
    # 1-D parameters (norms, LayerScale gammas) and biases, decay for everything else - the cls token and an
    # absolute position embedding included; lr x rate ** (depth + 1 - layer id) (rule 'beit').
    paramwise_cfg=dict(
        rule='beit',
        layer_decay_rate=0.75,
        num_layers=12,
        # RoPE frequencies have no counterpart in BEiT: no weight decay, the lr of their block (RECIPES F).
        custom_keys={'rope.freqs': dict(decay_mult=0.0)}))

# mmcv 1.x (LrUpdaterHook with PolyLrUpdaterHook) gives iteration t the lr
#   base * (1 - t / 160000) ** 1.0 * (1 - (1 - t / 1500) * (1 - 1e-6))   for t < 1500, without the last factor after;
# the warmup multiplies a poly decay that runs over the whole 160k iterations, it does not restart it. mmengine's
# chained LinearLR and PolyLR multiply their factors, which reach 1 (resp. 0) at t = end - begin - 1: hence
# end=1501 and end=max_iters + 1.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1501),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1),
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

# BEiT v2's README trains with `--seed 0 --deterministic`: seed 0 in every process, cudnn.benchmark off. mmengine's
# deterministic=True would also call torch.use_deterministic_algorithms(True), under which CUDA training of this
# model stops (bilinear upsampling has no deterministic backward), so it stays False (env_cfg turns benchmark off).
randomness = dict(seed=0, deterministic=False, diff_rank_seed=False)

# The recipe's batch is 16 images. With auto_scale_lr.enable=True mmengine scales lr by (GPUs x images per GPU) / 16.
auto_scale_lr = dict(enable=False, base_batch_size=16)
