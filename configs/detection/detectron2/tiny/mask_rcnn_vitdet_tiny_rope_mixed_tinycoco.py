# The RoPE-Mixed Mask R-CNN recipe shrunk for a CPU: a 2-block 64-wide RoPE-ViTDet backbone (windows of 4 tokens,
# block 1 global), narrow box / mask heads, fewer proposals, LSJ at 128 instead of 1024, batch 2, 300 iterations.
# Everything else - model classes, pyramid, augmentation, optimizer, schedule shape - is the real recipe's. Trains
# from scratch on the generated shapes dataset, registered by the entry point:
#   python -m ropevit_dense.data coco data/tiny_coco
#   python tools/train_net_d2.py --config-file configs/detection/detectron2/tiny/mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py \
#       --coco-dataset tiny_coco_train data/tiny_coco/annotations/instances_train.json data/tiny_coco/train \
#       --coco-dataset tiny_coco_val data/tiny_coco/annotations/instances_val.json data/tiny_coco/val
from functools import partial

from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

from ..mask_rcnn_vitdet_b_rope_mixed_100ep import dataloader, lr_multiplier, model, optimizer, train

_size = 128

model.backbone.net.update(embed_dim=64, depth=2, num_heads=2, window_size=4, global_block_indexes=(1,),
                          drop_path_rate=0.0, init_values=1.0, pretrained=None)
model.backbone.square_pad = _size
model.proposal_generator.update(pre_nms_topk=(400, 200), post_nms_topk=(200, 100))
model.roi_heads.update(num_classes=3, batch_size_per_image=64)
model.roi_heads.box_head.conv_dims = [32]
model.roi_heads.mask_head.conv_dims = [32, 32]

dataloader.train.dataset.names = "tiny_coco_train"
dataloader.test.dataset.names = "tiny_coco_val"
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0
_flip, _rescale, _crop = dataloader.train.mapper.augmentations
_rescale.update(target_height=_size, target_width=_size)
_crop.crop_size = (_size, _size)
dataloader.test.mapper.augmentations[0].update(short_edge_length=_size, max_size=_size)

train.update(device="cpu", max_iter=300, eval_period=300, log_period=20,
             output_dir="./output/mask_rcnn_vitdet_tiny_rope_mixed_tinycoco")
train.amp.enabled = False
train.ddp.fp16_compression = False
train.checkpointer.period = 100
lr_multiplier.scheduler.update(values=[1.0, 0.1], milestones=[270], num_updates=train.max_iter)
lr_multiplier.warmup_length = 20 / train.max_iter
# from scratch: a higher learning rate, layer decay over the 2 blocks
optimizer.lr = 4e-4
optimizer.params.lr_factor_func = partial(get_vit_lr_decay_rate, num_layers=2, lr_decay_rate=0.7)
