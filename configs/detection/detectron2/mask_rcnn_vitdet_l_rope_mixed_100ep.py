# Mask R-CNN, RoPE-ViT-L/16 ViTDet backbone with RoPE-Mixed, COCO, LSJ 1024, 100 epochs.
# Backbone initialised from rope_mixed_deit_large_patch16_LS (ropevit_dense.PRETRAINED).
from .common.mask_rcnn_vitdet_l_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.update(rope_type="mixed", use_ape=False, pretrained="rope_mixed_deit_large_patch16_LS")
train.output_dir = "./output/mask_rcnn_vitdet_l_rope_mixed_100ep"
