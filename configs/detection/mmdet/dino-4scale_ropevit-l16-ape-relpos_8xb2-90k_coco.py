# DINO 4-scale, ViT-L/16 backbone as detrex's DINO-ViTDet builds it (detectron2's ViT): absolute position
# embedding, resized with plain bicubic from its 14 x 14 pretraining grid in every forward, plus the decomposed
# relative position bias in every block (use_rel_pos=True; window blocks 2 * 14 - 1 rows, global blocks sized for
# 1024-pixel images, 2 * 64 - 1 rows, interpolated to other grids; zero-initialised, as the ImageNet checkpoint has
# none), no RoPE: the APE config of the same size with detectron2's relative positions added.
_base_ = ['./dino-4scale_ropevit-l16-ape_8xb2-90k_coco.py']

model = dict(backbone=dict(use_rel_pos=True, rel_pos_img_size=1024, ape_antialias=False))
