# COCO instance segmentation with large-scale jitter at 1024 (ViTDet's data recipe), on detectron2's common COCO
# loader: random flip, rescale by 0.1-2.0 of a 1024 x 1024 target, crop to 1024 x 1024 without padding (batches are
# square-padded to 1024 by the backbone's padding constraints); boxes are recomputed from the cropped masks.
# Test: shorter side 1024, longer side at most 1024.
import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

lsj_size = 1024

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.update(
    augmentations=[
        L(T.RandomFlip)(horizontal=True),
        L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=lsj_size, target_width=lsj_size),
        L(T.FixedSizeCrop)(crop_size=(lsj_size, lsj_size), pad=False),
    ],
    image_format="RGB",
    recompute_boxes=True,
)
dataloader.train.total_batch_size = 64
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=lsj_size, max_size=lsj_size)]
