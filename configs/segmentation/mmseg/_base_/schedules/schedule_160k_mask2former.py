# Mask2Former ADE20k semantic schedule (RECIPES D.4; Mask2Former configs/ade20k/semantic-segmentation/
# Base-ADE20K-SemanticSegmentation.yaml): AdamW lr 1e-4 (default betas and eps), weight decay 0.05, full-model
# gradient clipping at L2 norm 0.01, WarmupPolyLR power 0.9 without warmup over 160k iterations, batch 16
# (8 GPUs x 2), mixed precision.
max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    # Mask2Former's build_optimizer (train_net.py): lr x BACKBONE_MULTIPLIER for modules named *backbone*, no weight
    # decay for norm layers, nn.Embedding (query / level embeddings) and relative position bias tables
    # (rule 'mask2former').
    paramwise_cfg=dict(
        rule='mask2former',
        backbone_multiplier=0.1,
        weight_decay_norm=0.0,
        weight_decay_embed=0.0,
        custom_keys={
            # RoPE frequencies have no counterpart in Mask2Former: no weight decay, the backbone's lr (RECIPES F).
            'rope.freqs': dict(decay_mult=0.0),
            # mmdet's pixel decoder keeps its level embedding in an nn.Embedding; Mask2Former's is a bare
            # nn.Parameter (msdeformattn.py), which its rule lets decay.
            'pixel_decoder.level_encoding': dict(decay_mult=1.0),
        }))

# detectron2's WarmupPolyLR (projects/DeepLab) gives iteration t the lr base * (1 - t / 160000) ** 0.9; mmengine's
# PolyLR reaches 0 at t = end - begin - 1, hence end=max_iters + 1.
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

# detectron2's SEED = -1: default_setup seeds every process with its own random seed.
randomness = dict(seed=None, diff_rank_seed=True)

# The recipe's batch is 16 images. With auto_scale_lr.enable=True mmengine scales lr by (GPUs x images per GPU) / 16.
auto_scale_lr = dict(enable=False, base_batch_size=16)
