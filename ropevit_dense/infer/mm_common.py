"""What the mmdet and mmseg inferencers share: models built from the config, weights read by the safe loader.

mmengine's ``BaseInferencer._init_model`` reads the checkpoint with ``torch.load`` itself; here the file is read
by :func:`ropevit_dense.checkpoints.load_file` (``weights_only`` always, with the mmengine allowlist; ``.pkl``
files with the package's restricted unpickler) and checked against the model before mmengine copies it in, so a
checkpoint of another model is an error, not a model left half random.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn

from ..checkpoints.io import CheckpointError
from ..checkpoints.pickle_safe import load_any
from .core import InferError


def load_config(config: str, cfg_options: Sequence[str]) -> Any:
    """The mmengine config with ``key=value`` overrides applied (``--cfg-options`` syntax)."""
    import argparse

    from mmengine.config import Config, DictAction

    cfg = Config.fromfile(config)
    if cfg_options:
        bad = [o for o in cfg_options if "=" not in o]
        if bad:
            raise InferError(f"config overrides must be key=value, got {bad}")
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest="options")(None, ns, list(cfg_options))
        cfg.merge_from_dict(ns.options)
    return cfg


def read_checkpoint(weights: str) -> dict:
    """The checkpoint as a dict with a ``state_dict`` (mmengine), a ``model`` (detectron2) or a bare state dict, read
    safely: torch files with ``weights_only`` and the mmengine allowlist, ``.pkl`` with the restricted unpickler."""
    try:
        ckpt = load_any(weights)
    except CheckpointError as exc:
        raise InferError(str(exc)) from None
    if not isinstance(ckpt, dict):
        raise InferError(f"checkpoint '{weights}' holds a {type(ckpt).__name__}, not a state dict")
    return ckpt


def state_dict_of(ckpt: dict) -> dict[str, torch.Tensor]:
    sd = ckpt.get("state_dict", ckpt.get("model", ckpt))
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InferError("checkpoint holds no tensors under 'state_dict' / 'model' or at its top level")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def check_fits(model: nn.Module, sd: dict[str, torch.Tensor], *, weights: str, config: str) -> None:
    """Raise when the checkpoint is not this model's: missing or unexpected keys, or shapes that differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} keys {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        raise InferError(f"checkpoint '{weights}' does not fit the model of '{config}': {'; '.join(parts)}")


def config_metainfo(cfg: Any) -> dict:
    """The test dataset's metainfo (classes, palette, ...) without reading its annotations."""
    from mmengine.registry import DATASETS

    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg["lazy_init"] = True
    return dict(DATASETS.build(dataset_cfg).metainfo)


class SafeWeightsMixin:
    """Put before an mmengine inferencer class: replaces its model initialisation (see the module docstring).

    The inferencer's own ``_load_weights_to_model`` still does the rest (copying the weights, the dataset meta
    of the checkpoint, the palette). A checkpoint without dataset meta takes the classes of the config's test
    dataset rather than the framework's default (COCO / ADE20k) names.
    """

    def _init_model(self, cfg: Any, weights: Optional[str], device: str = "cpu") -> nn.Module:
        from mmengine.registry import MODELS

        if weights is None:
            raise InferError("a checkpoint is needed")
        ckpt = read_checkpoint(weights)
        sd = state_dict_of(ckpt)
        if cfg.model.get("pretrained") is not None:
            del cfg.model.pretrained
        model = MODELS.build(cfg.model)
        model.cfg = cfg
        check_fits(model, sd, weights=weights, config=getattr(cfg, "filename", None) or "the config")
        ckpt = dict(ckpt, state_dict=sd)
        has_meta = "dataset_meta" in ckpt.get("meta", {})
        if not has_meta:
            meta = config_metainfo(cfg)
            keep = ("classes", "palette", "thing_classes", "stuff_classes")
            ckpt["meta"] = dict(ckpt.get("meta", {}), dataset_meta={k: v for k, v in meta.items() if k in keep})
        self._load_weights_to_model(model, ckpt, cfg)
        model.to(device)
        model.eval()
        return model
