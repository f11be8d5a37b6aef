# Mask R-CNN on a RoPE-ViT-B/16 ViTDet backbone, COCO, LSJ 1024, 100 epochs: detectron2's ViTDet recipe
# (projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py) with its ViT replaced by RoPEViT. Backbone: window 14
# in all blocks but 2, 5, 8, 11 (global), zero-padded windows (ViTDet), drop path 0.1, no relative position bias,
# no cls token; detectron2's simple feature pyramid (scales 4, 2, 1, 0.5 + max-pooled p6, LN, 256 channels, square padding to 1024).
# Schedule: 184,375 iterations at batch 64 (100 epochs of 118k images), AMP; AdamW lr 1e-4, weight decay 0.1
# (none on norms, the absolute position embedding and RoPE-Mixed frequencies), layer-wise lr decay 0.7, lr x0.1 at
# 88.9% and 96.3% of the run after 250 warm-up iterations. The configs in the parent folder choose the position
# encoding and the pretrained weights (model.backbone.net.pretrained); this one has none.
from functools import partial

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from ropevit_dense.adapters.detectron2 import RoPEViTBackbone, RoPEViTDetBackbone

from .coco_loader_lsj import dataloader

model = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
model.backbone._target_ = RoPEViTDetBackbone
model.backbone.net = L(RoPEViTBackbone)(
    embed_dim=768,
    depth=12,
    num_heads=12,
    patch_size=16,
    window_size=14,
    global_block_indexes=(2, 5, 8, 11),
    drop_path_rate=0.1,
    rope_type="mixed",
    use_ape=False,
    ape_antialias=False,  # detectron2's get_abs_pos: plain bicubic
    window_padding="zero",  # as detectron2's ViT: zero tokens pad the windows and attend as keys
    out_feature="last_feat",
    pretrained=None,
)

train = model_zoo.get_config("common/train.py").train
train.amp.enabled = True
train.ddp.fp16_compression = True
# Backbone weights come from model.backbone.net.pretrained (naver / timm / our layouts through the core loader);
# init_checkpoint is for detectron2 checkpoints of a whole detector.
train.init_checkpoint = ""
train.max_iter = 184375  # 100 epochs = 184,375 iterations x 64 images / 118k images

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[163889, 177546], num_updates=train.max_iter
    ),
    warmup_length=250 / train.max_iter,
    warmup_factor=0.001,
)

optimizer = model_zoo.get_config("common/optim.py").AdamW
# detectron2's layer ids fit RoPEViT's names: patch_embed / pos_embed 0, blocks.i (RoPE-Mixed frequencies
# included) i + 1, the rest depth + 1.
optimizer.params.lr_factor_func = partial(get_vit_lr_decay_rate, num_layers=12, lr_decay_rate=0.7)
optimizer.params.overrides = {"pos_embed": {"weight_decay": 0.0}, "freqs": {"weight_decay": 0.0}}
