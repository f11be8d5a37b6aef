# Cascade Mask R-CNN, RoPE-ViT-L/16 ViTDet backbone with RoPE-Axial, COCO, LSJ 1024, 100 epochs.
# Backbone initialised from rope_axial_deit_large_patch16_LS (ropevit_dense.PRETRAINED).
from .common.cascade_mask_rcnn_vitdet_l_100ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.net.update(rope_type="axial", use_ape=False, pretrained="rope_axial_deit_large_patch16_LS")
train.output_dir = "./output/cascade_mask_rcnn_vitdet_l_rope_axial_100ep"
