"""Registers the checkpoint and data guards (:mod:`.guards`) into mmdet's ``HOOKS`` and ``TRANSFORMS``, and
``RoPEDetDataPreprocessor`` (a minimum input size for DETR-style detectors) into its ``MODELS``.

Opt in from a config::

    custom_imports = dict(imports=['ropevit_dense.adapters.mmdet', 'ropevit_dense.adapters.mmdet_guards'],
                          allow_failed_imports=False)
    default_hooks = dict(checkpoint=dict(type='RoPECheckpointHook', by_epoch=False, interval=5000))
    custom_hooks = [dict(type='RoPEDataCheckHook')]
    train_pipeline = [dict(type='RoPELoadImageFromFile', on_error='skip'), ...]
    model = dict(data_preprocessor=dict(type='RoPEDetDataPreprocessor', min_size=(224, 224), ...))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch.nn.functional as F
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import HOOKS, MODELS, TRANSFORMS

from .guards import register_guards


class RoPEDetDataPreprocessor(DetDataPreprocessor):
    """mmdet's ``DetDataPreprocessor`` that also pads each batch up to ``min_size`` (bottom / right).

    DINO picks its ``num_queries`` (900) decoder queries as the top-k of the encoder's multi-scale tokens, so an
    input with fewer tokens fails inside ``torch.topk`` ("selected index k out of range"): a small image fed at its
    own size, or an extreme aspect ratio that the test ``Resize`` turns into a strip a few pixels high (16 x 4096
    becomes 5 x 1333 under ``scale=(1333, 800)``: 314 tokens at strides 8-64). Padding to ``min_size`` gives the
    encoder enough tokens; DETR-style detectors mask the padding (``img_shape`` vs ``batch_input_shape``) and
    scale boxes to ``img_shape``, so predictions stay inside the image. For 4 levels at strides 8-64 and 900 queries
    any ``min_size`` with 208 pixels or more on each side is enough (26^2 + 13^2 + 7^2 + 4^2 = 910 tokens).

    Args:
        min_size: (height, width) every batch is padded up to; None keeps mmdet's behaviour.
        **kwargs: ``DetDataPreprocessor``'s arguments.
    """

    def __init__(self, *, min_size: Optional[Sequence[int]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if min_size is not None:
            if len(min_size) != 2 or not all(isinstance(v, int) and v > 0 for v in min_size):
                raise ValueError(f"min_size must be (height, width) of positive ints, got {min_size!r}")
            min_size = (int(min_size[0]), int(min_size[1]))
        self.min_size = min_size

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if self.min_size is None:
            return data
        inputs, samples = data["inputs"], data["data_samples"]
        pad_h, pad_w = max(self.min_size[0] - inputs.shape[-2], 0), max(self.min_size[1] - inputs.shape[-1], 0)
        if not (pad_h or pad_w):
            return data
        if training and (self.pad_mask or self.pad_seg):
            raise ValueError(f"{type(self).__name__}: min_size padding of a {tuple(inputs.shape[-2:])} training batch "
                             "with pad_mask / pad_seg is not supported; resize the training images instead")
        inputs = F.pad(inputs, (0, pad_w, 0, pad_h), value=self.pad_value)
        for sample in samples or []:
            sample.set_metainfo({"batch_input_shape": tuple(inputs.shape[-2:])})
        return {**data, "inputs": inputs}


register_guards(HOOKS, TRANSFORMS)
if MODELS.get("RoPEDetDataPreprocessor") is not RoPEDetDataPreprocessor:
    MODELS.register_module(name="RoPEDetDataPreprocessor", module=RoPEDetDataPreprocessor)
