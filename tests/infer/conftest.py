"""Checkpoints of the tiny configs (random weights, in the files' real formats) for the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "detection": ROOT / "configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py",
    "instance": ROOT / "configs/segmentation/mmdet/tiny/mask2former_ropeswin-tiny-mixed_1xb2-lsj-400i_tinycoco.py",
    "panoptic": ROOT / "configs/segmentation/mmdet/tiny/"
                       "mask2former_ropeswin-tiny-mixed_1xb2-lsj-400i_tinycoco-panoptic.py",
    "semantic": ROOT / "configs/segmentation/mmseg/tiny/upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py",
    "detectron2": ROOT / "configs/detection/detectron2/tiny/mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py",
}


def save_mm_checkpoint(config: Path, path: Path, *, with_meta: bool = True, seed: int = 0) -> Path:
    """An mmengine-style checkpoint (``state_dict`` + ``meta.dataset_meta``) of the config's model, random weights."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings

    from ropevit_dense.infer.mm_common import config_metainfo

    cfg = Config.fromfile(str(config))
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    ckpt = {"state_dict": model.state_dict()}
    if with_meta:
        meta = config_metainfo(cfg)
        ckpt["meta"] = {"dataset_meta": {k: meta[k] for k in ("classes", "palette") if k in meta}}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def configs() -> dict[str, Path]:
    """task -> the tiny config the inference tests use for it."""
    return dict(CONFIGS)


@pytest.fixture(scope="session")
def mm_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """task -> checkpoint of the tiny config of that task (mmdet / mmseg)."""
    pytest.importorskip("mmdet")
    pytest.importorskip("mmseg")
    root = tmp_path_factory.mktemp("ckpts")
    return {task: save_mm_checkpoint(CONFIGS[task], root / f"{task}.pth")
            for task in ("detection", "instance", "panoptic", "semantic")}


@pytest.fixture(scope="session")
def tiny_panoptic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ropevit_dense.data import make_coco_panoptic

    root = tmp_path_factory.mktemp("tiny_panoptic")
    make_coco_panoptic(root, num_images=3, splits=("val",), seed=5)
    return root
