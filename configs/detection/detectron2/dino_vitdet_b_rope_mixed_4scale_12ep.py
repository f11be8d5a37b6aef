# DINO 4-scale (detrex) on a RoPE-ViT-B/16 ViTDet backbone with RoPE-Mixed, COCO, 12 epochs: detrex's
# DINO model (its projects/dino/configs/models/dino_r50.py) and 12-epoch recipe - DETR multi-scale augmentation,
# 90k iterations at batch 16, AdamW lr 1e-4, weight decay 1e-4 (none on norms, the absolute position embedding and
# RoPE-Mixed frequencies), backbone lr x0.1, gradient clipping 0.1, lr x0.1 at 82.5k - with the backbone replaced:
# window 14 in all blocks but 2, 5, 8, 11, drop path 0.1, detectron2's simple feature pyramid at scales 2, 1, 0.5
# plus a max-pooled p6 (strides 8-64) into DINO's GN ChannelMapper. DINO pads batches without size constraints;
# the backbone takes any size.
#
# Needs detrex (https://github.com/IDEA-Research/detrex, installed from its source checkout) and runs with detrex's
# own trainer, from the detrex checkout:
#   python tools/train_net.py --config-file <this file> --num-gpus 8
import os
from functools import partial
from importlib.util import find_spec

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detrex.config import get_config

from ropevit_dense.adapters.detectron2 import RoPEViTBackbone, RoPEViTDetBackbone, backbone_lr_factor

_dino = find_spec("projects.dino")
if _dino is None:
    raise ImportError("detrex's projects/dino is not importable: install detrex from its source checkout "
                      "(pip install -e .) and run from that checkout")
model = LazyConfig.load(os.path.join(_dino.submodule_search_locations[0], "configs", "models", "dino_r50.py")).model

model.backbone = L(RoPEViTDetBackbone)(
    net=L(RoPEViTBackbone)(
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
        pretrained="rope_mixed_deit_base_patch16_LS",
    ),
    in_feature="last_feat",
    out_channels=256,
    scale_factors=(2.0, 1.0, 0.5),
    top_block=L(LastLevelMaxPool)(),
    norm="LN",
    square_pad=0,
)
model.neck.input_shapes = {"p3": ShapeSpec(channels=256), "p4": ShapeSpec(channels=256),
                           "p5": ShapeSpec(channels=256), "p6": ShapeSpec(channels=256)}
model.neck.in_features = ["p3", "p4", "p5", "p6"]

dataloader = get_config("common/data/coco_detr.py").dataloader
optimizer = get_config("common/optim.py").AdamW
lr_multiplier = get_config("common/coco_schedule.py").lr_multiplier_12ep
train = get_config("common/train.py").train

# the backbone's weights come from model.backbone.net.pretrained; init_checkpoint is for whole-detector checkpoints
train.init_checkpoint = ""
train.output_dir = "./output/dino_vitdet_b_rope_mixed_4scale_12ep"
train.max_iter = 90000
train.eval_period = 5000
train.log_period = 20
train.checkpointer.period = 5000
train.clip_grad.enabled = True
train.clip_grad.params.max_norm = 0.1
train.clip_grad.params.norm_type = 2
train.device = "cuda"
model.device = train.device

optimizer.lr = 1e-4
optimizer.betas = (0.9, 0.999)
optimizer.weight_decay = 1e-4
optimizer.params.lr_factor_func = partial(backbone_lr_factor, factor=0.1)
optimizer.params.overrides = {"pos_embed": {"weight_decay": 0.0}, "freqs": {"weight_decay": 0.0}}

dataloader.train.total_batch_size = 16
dataloader.train.num_workers = 16
dataloader.evaluator.output_dir = train.output_dir
