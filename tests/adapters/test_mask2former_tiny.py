"""The tiny Mask2Former RoPE-Swin config learns: it fits 8 generated ADE20k-format images (slow, --run-slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("mmseg")

TINY = (Path(__file__).resolve().parents[2] / "configs" / "segmentation" / "mmseg" / "tiny"
        / "mask2former_ropeswin-tiny-mixed_1xb4-400i_tinyade20k-64x64.py")


@pytest.mark.slow
def test_tiny_mask2former_learns(tmp_path, mim):
    """400 iterations of 4 crops (about 2 minutes on 2 cores): mIoU on the training images >= 0.5 (0.97 when
    measured)."""
    from ropevit_dense.data import make_ade20k

    root = tmp_path / "ade"
    make_ade20k(root, num_images=8, splits=("training",), seed=3)
    out = mim("train", "mmseg", str(TINY), "--work-dir", str(tmp_path / "work"), "--cfg-options",
              f"train_dataloader.dataset.data_root={root}", f"val_dataloader.dataset.data_root={root}",
              f"test_dataloader.dataset.data_root={root}",
              "val_dataloader.dataset.data_prefix.img_path=images/training",
              "val_dataloader.dataset.data_prefix.seg_map_path=annotations/training", cwd=tmp_path)
    miou = float(re.findall(r"mIoU: (\d+\.\d+)", out)[-1]) / 100
    assert miou >= 0.5, f"mIoU on the training images after 400 iterations: {miou}"
