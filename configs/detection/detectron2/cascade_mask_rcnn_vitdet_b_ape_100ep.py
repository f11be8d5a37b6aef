# Cascade Mask R-CNN, RoPE-ViT-B/16 ViTDet backbone with APE (DeiT-III baseline, no RoPE), COCO, LSJ 1024, 100 epochs.
# Backbone initialised from deit_base_patch16_LS (ropevit_dense.PRETRAINED).
from .common.cascade_mask_rcnn_vitdet_b_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.update(rope_type=None, use_ape=True, pretrained="deit_base_patch16_LS")
train.output_dir = "./output/cascade_mask_rcnn_vitdet_b_ape_100ep"
