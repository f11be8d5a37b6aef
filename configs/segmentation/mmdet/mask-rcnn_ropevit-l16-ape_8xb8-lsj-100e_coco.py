# Mask R-CNN, ViT-L/16 ViTDet backbone with absolute position embedding only (the DeiT-III baseline), COCO, LSJ
# 1024, 100 epochs: the RoPE-Mixed config of the same size with another position encoding and its checkpoint; the
# mmdet twin of configs/detection/detectron2/mask_rcnn_vitdet_l_ape_100ep.py.
_base_ = ['./mask-rcnn_ropevit-l16-mixed_8xb8-lsj-100e_coco.py']

model = dict(
    backbone=dict(
        rope_type=None,
        use_ape=True,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/deit_large_patch16_LS/pytorch_model.bin')))
