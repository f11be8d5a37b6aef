# Cascade Mask R-CNN, RoPE-ViT-B/16 ViTDet backbone with RoPE-Mixed + APE, COCO, LSJ 1024, 100 epochs.
# Backbone initialised from rope_mixed_ape_deit_base_patch16_LS (ropevit_dense.PRETRAINED).
from .common.cascade_mask_rcnn_vitdet_b_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.update(rope_type="mixed", use_ape=True, pretrained="rope_mixed_ape_deit_base_patch16_LS")
train.output_dir = "./output/cascade_mask_rcnn_vitdet_b_rope_mixed_ape_100ep"
