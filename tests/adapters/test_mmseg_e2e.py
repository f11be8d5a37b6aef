"""End to end through the mim command line on a generated ADE20k dataset: train, checkpoint, test (single scale
and multi-scale + flip), resume; and, marked slow, learning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "segmentation" / "mmseg" / "tiny" / "upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py"
MIOU = re.compile(r"mIoU: (\d+\.\d+)")


def _data_options(root: Path, val_split: str = "validation") -> list[str]:
    return [f"train_dataloader.dataset.data_root={root}", f"val_dataloader.dataset.data_root={root}",
            f"test_dataloader.dataset.data_root={root}",
            f"val_dataloader.dataset.data_prefix.img_path=images/{val_split}",
            f"val_dataloader.dataset.data_prefix.seg_map_path=annotations/{val_split}"]


def test_mim_train_test_tta_resume(tiny_ade20k, tmp_path, mim):
    work = tmp_path / "work"
    common = ["train_dataloader.batch_size=2", "default_hooks.logger.interval=1",
              "default_hooks.checkpoint.interval=2", *_data_options(tiny_ade20k)]
    out = mim("train", "mmseg", str(TINY), "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=4",
              "train_cfg.val_interval=100", *common, cwd=tmp_path)
    assert "Iter(train) [4/4]" in out
    ckpt = work / "iter_4.pth"
    assert ckpt.exists()

    from mmengine.config import Config

    three = ["test_dataloader.dataset.indices=3", *_data_options(tiny_ade20k)]  # 12 views each with --tta
    for mode, extra in (("single", []), ("tta", ["--tta"])):
        out = mim("test", "mmseg", str(TINY), "--checkpoint", str(ckpt), "--work-dir", str(tmp_path / mode), *extra,
                  "--cfg-options", *three, cwd=tmp_path)
        assert MIOU.search(out) and "Iter(test) [3/3]" in out, out[-2000:]
        ran = Config.fromfile(str(tmp_path / mode / TINY.name))  # the config the test run used
        assert ran.model.type == ("SegTTAModel" if extra else "EncoderDecoder")
        if extra:
            assert ran.test_dataloader.dataset.pipeline[1].type == "TestTimeAug"

    out = mim("train", "mmseg", str(TINY), "--work-dir", str(work), "--resume", "--cfg-options",
              "train_cfg.max_iters=6", "train_cfg.val_interval=100", *common, cwd=tmp_path)
    assert "resumed epoch: 0, iter: 4" in out, out[-3000:]
    assert "Iter(train) [5/6]" in out and "Iter(train) [1/6]" not in out
    from ropevit_dense.checkpoints import load_file

    assert load_file(work / "iter_6.pth")["meta"]["iter"] == 6


@pytest.mark.slow
def test_tiny_rope_upernet_learns(tmp_path, mim):
    """Learning, not just running: the tiny RoPE-Mixed UperNet fits 8 generated images to mIoU >= 0.5 on them.

    About 2.5 minutes on 2 CPU cores (400 iterations of 4 crops); run with --run-slow.
    """
    from ropevit_dense.data import make_ade20k

    root = tmp_path / "ade"
    make_ade20k(root, num_images=8, splits=("training",), seed=3)
    out = mim("train", "mmseg", str(TINY), "--work-dir", str(tmp_path / "work"), "--cfg-options",
              *_data_options(root, val_split="training"), cwd=tmp_path)
    miou = float(MIOU.findall(out)[-1]) / 100
    assert miou >= 0.5, f"mIoU on the training images after 400 iterations: {miou}"
