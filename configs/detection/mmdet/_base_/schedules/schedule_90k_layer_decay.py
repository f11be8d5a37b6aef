# detrex's DINO-EVA-02 12-epoch optimisation (projects/dino_eva/configs/dino-eva-02/*.py, RECIPES E): the 12-epoch
# DINO schedule and optimizer of schedule_90k.py (90k iterations at batch 16, lr x0.1 at 82.5k, no warmup; AdamW lr
# 1e-4, weight decay 1e-4, clipping at L2 norm 0.1) with other parameter groups: weight decay on every parameter
# (detectron2's get_default_optimizer_params with weight_decay_norm=None and no overrides: norms and the position
# embedding decay too) and layer-wise lr decay (get_vit_lr_decay_rate: patch / position embedding
# rate^(depth+1), block i rate^(depth-i), neck and head 1; no other backbone factor). The rate and depth are set per
# model: 0.7 over 12 blocks (B), 0.8 over 24 (L).
_base_ = ['./schedule_90k.py']

optim_wrapper = dict(
    paramwise_cfg=dict(_delete_=True, rule='detectron2', weight_decay_norm=None, layer_decay_rate=0.7, num_layers=12))
