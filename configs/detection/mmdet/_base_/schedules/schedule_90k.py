# detrex's 12-epoch DINO schedule (RECIPES A.4): 90k iterations at batch 16 (8 GPUs x 2), no warmup, lr x0.1 at
# 82.5k (detrex configs/common/coco_schedule.py lr_multiplier_12ep); AdamW lr 1e-4, betas (0.9, 0.999), weight
# decay 1e-4, full-model gradient clipping at L2 norm 0.1 (projects/dino/configs/dino-*/dino_*_12ep.py).
max_iters = 90000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# fvcore's MultiStepParamScheduler(values=[1.0, 0.1], milestones=[82500, 90000]) gives iteration t the factor 0.1
# from t = 82500 on; mmengine's MultiStepLR multiplies by gamma after the step that reaches a milestone: the same.
param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[82500], gamma=0.1)]

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='RoPEOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    # detrex builds its parameter groups with detectron2's get_default_optimizer_params(weight_decay_norm=0.0) and
    # lr_factor_func = 0.1 if "backbone" in the parameter name: every parameter decays except those of torch norm
    # layers (biases, position embeddings and relative position tables decay too); the simple pyramid's
    # channel-first LayerNorms are not torch norms there, so they decay as well (rule 'detectron2').
    paramwise_cfg=dict(
        rule='detectron2',
        weight_decay_norm=0.0,
        # 'neck.0.': the ViT models' simple pyramid, which detrex keeps inside model.backbone (x0.1 with it);
        # the Swin models have no neck.0.
        lr_factors={'backbone': 0.1, 'neck.0.': 0.1},
        # RoPE frequencies have no counterpart in detrex: no weight decay, the lr of their block (RECIPES F).
        custom_keys={'rope.freqs': dict(decay_mult=0.0)}))

# The recipe's batch is 16 images. `--auto-scale-lr` scales lr (and nothing else) by (GPUs x images per GPU) / 16.
auto_scale_lr = dict(base_batch_size=16, enable=False)
