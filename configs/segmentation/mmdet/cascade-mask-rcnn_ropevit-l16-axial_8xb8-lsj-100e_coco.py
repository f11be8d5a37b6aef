# Cascade Mask R-CNN, ViT-L/16 ViTDet backbone with RoPE-Axial, COCO, LSJ 1024, 100 epochs: the RoPE-Mixed config of
# the same size with another position encoding and its checkpoint; the mmdet twin of
# configs/detection/detectron2/cascade_mask_rcnn_vitdet_l_rope_axial_100ep.py.
_base_ = ['./cascade-mask-rcnn_ropevit-l16-mixed_8xb8-lsj-100e_coco.py']

model = dict(
    backbone=dict(
        rope_type='axial',
        use_ape=False,
        init_cfg=dict(type='Pretrained', checkpoint='hf://naver-ai/rope_axial_deit_large_patch16_LS/pytorch_model.bin')))
