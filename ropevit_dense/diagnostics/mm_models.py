"""The model of an mmdet / mmseg config, built without pretrained weights, and one training loss on generated inputs.

Used by the config sweeps of the test suite (every trainable parameter receives a gradient, so DDP with
``find_unused_parameters=False`` cannot fail on the first iteration; bf16 autocast agrees with fp32) and by the GPU
check (:mod:`.gpu_check`). The inputs are random images with random boxes (mmdet's own ``demo_mm_inputs``) or random
label maps (mmseg), packed exactly as a dataloader packs them, so they go through the model's data preprocessor.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings
from torch import nn

FRAMEWORKS = ("mmdet", "mmseg")


def load_config(path: Union[str, os.PathLike]) -> Config:
    """Load a config, import its ``custom_imports`` and switch pretrained backbone loading off (no downloads)."""
    cfg = Config.fromfile(str(path))
    if cfg.get("default_scope") not in FRAMEWORKS:
        raise ValueError(f"{path}: default_scope {cfg.get('default_scope')!r} is not one of {FRAMEWORKS}")
    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg.custom_imports)
    if cfg.model.get("backbone") is not None:
        cfg.model.backbone.init_cfg = None
    return cfg


def shrink(cfg: Config, *, size: tuple[int, int]) -> list[str]:
    """Make ``cfg``'s model cheap to run while keeping its structure; returns what was changed.

    Kept: every module class, every width and head count, the position mode (RoPE type, APE, RPB, relative
    positions), window sizes, drop path, losses and assigners. Changed: the backbone has one block of each kind
    (ViTDet: one window block then one global block; all-global ViT with several outputs: one block per output;
    Swin: a plain and a shifted block per stage), the detection transformer has 1 encoder and 2 decoder layers and
    at most 100 queries (DINO's top-k query selection needs as many encoder tokens as queries), two-stage detectors
    keep at most 100 proposals and sample at most 64 RoIs per image, the
    Mask2Former pixel decoder 1 encoder layer and its decoder one layer per feature level, mask losses sample at most
    1024 points, and inputs are ``size`` (no fixed-size batch augmentation or padding to 1024).
    """
    model, changes = cfg.model, []
    bb = model.get("backbone") or {}
    if bb.get("type") == "RoPEViT":
        outs = bb.get("out_indices")
        windowed = bb.get("window_size", 0) and bb.get("global_block_indexes")
        depth = max(len(outs) if outs else 1, 2 if windowed else 1)
        bb.depth = depth
        if outs:
            bb.out_indices = tuple(range(depth - len(outs), depth))
        if windowed:
            bb.global_block_indexes = (depth - 1,)
        changes.append(f"backbone depth {depth}" + (" (window blocks, then global block)" if windowed else ""))
    elif bb.get("type") == "RoPESwin":
        bb.depths = (2,) * len(bb.get("depths", (2, 2, 6, 2)))
        changes.append(f"backbone depths {bb.depths}")
    if model.get("num_queries", 0) > 100:
        model.num_queries = 100
        changes.append("100 queries")
    for key, layers in (("encoder", 1), ("decoder", 2)):
        if isinstance(model.get(key), dict) and "num_layers" in model[key]:
            model[key].num_layers = layers
            changes.append(f"{key} layers {layers}")
    train_cfg = model.get("train_cfg") or {}
    rcnn = train_cfg.get("rcnn")
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn] if rcnn else []):
        if stage.get("sampler", {}).get("num", 0) > 64:
            stage.sampler.num = 64
    if train_cfg.get("rpn_proposal"):
        train_cfg.rpn_proposal.nms_pre = min(train_cfg.rpn_proposal.get("nms_pre", 200), 200)
        train_cfg.rpn_proposal.max_per_img = min(train_cfg.rpn_proposal.get("max_per_img", 100), 100)
    if rcnn or train_cfg.get("rpn_proposal"):
        changes.append("two-stage: <= 100 proposals, <= 64 sampled RoIs per image")
    head = model.get("decode_head") or {}
    if isinstance(head, dict) and head.get("type") == "Mask2FormerHead":
        head.pixel_decoder.encoder.num_layers = 1
        head.transformer_decoder.num_layers = head.get("num_transformer_feat_level", 3)
        head.train_cfg.num_points = min(head.train_cfg.get("num_points", 1024), 1024)
        changes.append("Mask2Former: 1 pixel-decoder layer, 1 decoder layer per level, <= 1024 points")
    changes += set_input_size(cfg, size)
    return changes


def set_input_size(cfg: Config, size: tuple[int, int]) -> list[str]:
    """Let ``size`` inputs through the data preprocessor as they are (no padding to a fixed crop or batch size)."""
    pre, changes = cfg.model.get("data_preprocessor") or {}, []
    if pre.get("size") is not None:
        pre.size = tuple(size)
        changes.append(f"preprocessor size {tuple(size)}")
    if pre.get("batch_augments"):
        pre.batch_augments = None
        changes.append("no batch augments")
    if pre.get("pad_size_divisor", 1) > 32:  # LSJ recipes pad every batch to 1024 x 1024
        pre.pad_size_divisor = 32
        changes.append("padding to multiples of 32")
    return changes


def build_model(cfg: Config) -> nn.Module:
    """Build and initialise ``cfg.model`` in its framework's registry (train mode, CPU)."""
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    with _quiet_mmengine():  # init_weights logs one INFO record per parameter
        model.init_weights()
    return model.train()


@contextlib.contextmanager
def _quiet_mmengine() -> Iterator[None]:
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def num_classes(model: nn.Module) -> int:
    """The class count of the model's heads (the largest: an RPN's single objectness class is not it)."""
    counts = [n for m in model.modules() if isinstance(n := getattr(m, "num_classes", None), int) and n > 0]
    if not counts:
        raise ValueError(f"{type(model).__name__} has no head with num_classes")
    return max(counts)


def synthetic_batch(model: nn.Module, framework: str, *, batch_size: int = 2, size: tuple[int, int] = (64, 96),
                    seed: int = 0) -> dict[str, list]:
    """A dataloader-style batch (``inputs``: uint8 ``(3, H, W)`` images, ``data_samples``) of random content.

    Detection: 3 random boxes per image (masks too for models with a mask head); segmentation: random labels of
    every class with ~10 % ignored pixels (255).
    """
    h, w = size
    classes = num_classes(model)
    if framework == "mmdet":
        from mmdet.testing import demo_mm_inputs

        roi = getattr(model, "roi_head", None)
        with_mask = bool(getattr(roi, "with_mask", False)) or "Mask" in type(model).__name__
        return demo_mm_inputs(batch_size=batch_size, image_shapes=(3, h, w), num_items=[3] * batch_size,
                              num_classes=classes, with_mask=with_mask)
    if framework != "mmseg":
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got '{framework}'")
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for i in range(batch_size):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)))
        label = rng.integers(0, classes, (1, h, w))
        label[rng.random((1, h, w)) < 0.1] = 255
        s = SegDataSample(metainfo=dict(img_path=f"<random {i}>", ori_shape=(h, w), img_shape=(h, w),
                                        pad_shape=(h, w), scale_factor=(1.0, 1.0), flip=False))
        s.gt_sem_seg = PixelData(data=torch.from_numpy(label).long())
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


@contextlib.contextmanager
def _autocast(device: torch.device, dtype: Optional[torch.dtype]) -> Iterator[None]:
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
        yield


def training_loss(model: nn.Module, batch: dict[str, list], *, autocast: Optional[torch.dtype] = None,
                  seed: int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    """The total training loss of ``batch`` (what ``train_step`` back-propagates) and the logged loss terms.

    Args:
        autocast (torch.dtype | None): run the forward pass under ``torch.autocast`` with this dtype, on the
            model's device. Default: None (full precision).
        seed (int): seeds torch's RNG first, so two calls draw the same denoising noise, drop paths and points.
    """
    device = next(model.parameters()).device
    data = model.data_preprocessor(batch, training=True)
    torch.manual_seed(seed)
    with _autocast(device, autocast):
        losses = model(**data, mode="loss")
    return model.parse_losses(losses)


def parameters_without_grad(model: nn.Module) -> list[str]:
    """Names of trainable parameters that the last backward pass did not reach (DDP's "unused parameters")."""
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def non_finite_grads(model: nn.Module) -> list[str]:
    """Names of parameters whose gradient holds a NaN or an infinity."""
    return [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]


# keys whose values only set sizes: two model configs equal up to these have the same structure
_WIDTH_KEYS = frozenset({"embed_dim", "embed_dims", "num_heads", "in_channels", "out_channels", "channels",
                         "feat_channels", "depths", "drop_path_rate", "rel_pos_img_size"})


def structure_key(cfg: Config) -> str:
    """``cfg.model`` with every width-only value blanked: configs that differ only in size (S / B / L, T / S / B)
    get the same key once :func:`shrink` has collapsed their depths."""
    import json

    def blank(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: "<width>" if k in _WIDTH_KEYS else blank(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [blank(v) for v in value]
        return value

    model = cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model)
    return json.dumps(blank(model), sort_keys=True, default=str)


def width(cfg: Config) -> int:
    """The backbone's embedding width (0 when it has none), to pick the narrowest config of a structure."""
    backbone = cfg.model.get("backbone") or {}
    return int(backbone.get("embed_dim", backbone.get("embed_dims", 0)) or 0)
