# Cascade Mask R-CNN on a RoPE-ViT-L/16 ViTDet backbone, COCO, LSJ 1024, 100 epochs: the cascade ViT-B recipe with
# ViT-L (1024 wide, 24 blocks, 16 heads), global attention in blocks 5, 11, 17, 23, drop path 0.4, layer decay 0.8.
from functools import partial

from .cascade_mask_rcnn_vitdet_b_100ep import (
    dataloader,
    get_vit_lr_decay_rate,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.net.update(embed_dim=1024, depth=24, num_heads=16, global_block_indexes=(5, 11, 17, 23),
                          drop_path_rate=0.4)
optimizer.params.lr_factor_func = partial(get_vit_lr_decay_rate, num_layers=24, lr_decay_rate=0.8)
