"""mmseg adapter: registers the RoPE backbones and the optimizer constructor into mmseg's own registries.

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmseg'], allow_failed_imports=False)
    model = dict(backbone=dict(type='RoPEViT', out_indices=(3, 5, 7, 11), ...),
                 neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5]), ...)

Registered names: ``RoPEViT``, ``RoPESwin``, ``RoPESimplePyramid``, ``ProbabilityAverageSegTTAModel`` and, when
mmdet is installed (Mask2Former's head lives there), ``FP32MSDeformAttnPixelDecoder`` in ``mmseg.registry.MODELS``;
``RoPEOptimWrapperConstructor`` in ``mmseg.registry.OPTIM_WRAPPER_CONSTRUCTORS`` (the recipes' own parameter rules,
layer-wise decay that knows our ``blocks.i`` / ``layers.s.blocks.b`` naming; mmseg's own
``LayerDecayOptimizerConstructor`` only handles BEiT / MAE class names and ``layers.i``). mmseg's registries are
separate from mmdet's; importing both adapters registers the same classes into each. Idempotent.
"""

from __future__ import annotations

import importlib.util

import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors import SegTTAModel
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from .openmmlab import register_into


class ProbabilityAverageSegTTAModel(SegTTAModel):
    """Test-time augmentation that averages the segmentor's scores as they are.

    mmseg's ``SegTTAModel`` applies a softmax to each augmented view before averaging, which is right for logits
    (UperNet) but not for heads whose ``seg_logits`` are already probabilities: Mask2Former's semantic output is
    class softmax x mask sigmoid summed over queries, and its own multi-scale test averages those maps directly.
    A single-channel head (``out_channels == 1``, binary segmentation) is thresholded at its decode head's
    ``threshold``, as mmseg does, instead of taking an argmax over one channel.
    """

    def merge_preds(self, data_samples_list: list) -> list:
        merged = []
        for views in data_samples_list:
            scores = torch.stack([view.seg_logits.data for view in views]).mean(0)
            out = views[0].__class__()
            out.set_metainfo(dict(views[0].metainfo))
            if scores.shape[0] == 1:
                threshold = getattr(getattr(self.module, "decode_head", None), "threshold", None)
                pred = (scores > (0.5 if threshold is None else threshold)).to(torch.int64)
            else:
                pred = scores.argmax(0, keepdim=True)
            out.set_data({"seg_logits": PixelData(data=scores), "pred_sem_seg": PixelData(data=pred)})
            if "gt_sem_seg" in views[0]:
                out.set_data({"gt_sem_seg": views[0].gt_sem_seg})
            merged.append(out)
        return merged


register_into(MODELS, OPTIM_WRAPPER_CONSTRUCTORS)
if MODELS.get("ProbabilityAverageSegTTAModel") is not ProbabilityAverageSegTTAModel:
    MODELS.register_module(name="ProbabilityAverageSegTTAModel", module=ProbabilityAverageSegTTAModel)
if importlib.util.find_spec("mmdet") is not None:
    from . import mask2former

    mask2former.register_into(MODELS)
