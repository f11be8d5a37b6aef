"""Multi-resolution evaluation (tools/multires_eval.py) and the toy study (tools/toy_study.py) on tiny inputs."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
SEG_TINY = ROOT / "configs/segmentation/mmseg/tiny/upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py"
DET_TINY = ROOT / "configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def _png_ok(path: Path) -> None:
    from PIL import Image

    assert path.stat().st_size > 1000
    with Image.open(path) as im:
        im.load()
        assert im.size[0] > 100 and im.size[1] > 100


@pytest.mark.parametrize("config, base", [(SEG_TINY, (512, 96)), (DET_TINY, (267, 160))])
def test_set_test_resolution_sets_the_short_side_and_keeps_the_aspect_cap(config, base):
    from mmengine.config import Config

    from ropevit_dense.evaluation.multires import set_test_resolution

    cfg = Config.fromfile(str(config))
    for short in (48, 200):
        new = set_test_resolution(cfg, short)
        resize = next(t for t in new.test_dataloader.dataset.pipeline if t["type"] == "Resize")
        assert resize["scale"] == (round(short * base[0] / base[1]), short) and resize["keep_ratio"]
    resize0 = next(t for t in cfg.test_dataloader.dataset.pipeline if t["type"] == "Resize")
    assert tuple(resize0["scale"]) == base  # the input config is left alone
    with pytest.raises(ValueError, match="positive short side"):
        set_test_resolution(cfg, 0)


def test_whole_image_inference_is_for_segmentation_only():
    from mmengine.config import Config

    from ropevit_dense.evaluation.multires import set_test_resolution

    seg = set_test_resolution(Config.fromfile(str(SEG_TINY)), 64, whole=True)
    assert seg.model.test_cfg == dict(mode="whole")
    with pytest.raises(ValueError, match="segmentation configs"):
        set_test_resolution(Config.fromfile(str(DET_TINY)), 64, whole=True)


def test_multires_eval_cli_writes_table_csv_and_plot(tiny_ade20k, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import ropevit_dense.adapters.mmseg  # noqa: F401

    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(SEG_TINY)).model)
    ckpt = tmp_path / "model.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, ckpt)
    out = tmp_path / "out"
    proc = _run(str(ROOT / "tools/multires_eval.py"), str(SEG_TINY), str(ckpt), "--resolutions", "64", "112",
                "--whole", "--out-dir", str(out), "--name", "tiny", "--train-resolution", "96", "--cfg-options",
                f"test_dataloader.dataset.data_root={tiny_ade20k}", "test_dataloader.dataset.indices=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "multires.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["resolution"]) for r in rows] == [("tiny", "64"), ("tiny", "112")]
    assert all(0.0 <= float(r["mIoU"]) <= 100.0 for r in rows)
    assert "| model \\ short side | 64 | 112 |" in proc.stdout and "| tiny |" in proc.stdout
    _png_ok(out / "multires.png")
    assert (out / "runs" / "short64").is_dir() and (out / "runs" / "short112").is_dir()
    before = (out / "multires.csv").read_bytes()
    again = _run(str(ROOT / "tools/multires_eval.py"), str(SEG_TINY), str(ckpt), "--resolutions", "64",
                 "--out-dir", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and (out / "multires.csv").read_bytes() == before


def test_multires_eval_cli_names_bad_inputs(tmp_path):
    proc = _run(str(ROOT / "tools/multires_eval.py"), str(SEG_TINY), str(tmp_path / "missing.pth"),
                "--resolutions", "64", cwd=tmp_path)
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr and "missing.pth" in proc.stderr
    (tmp_path / "m.pth").write_bytes(b"")
    proc = _run(str(ROOT / "tools/multires_eval.py"), str(SEG_TINY), str(tmp_path / "m.pth"), "--resolutions", "0",
                cwd=tmp_path)
    assert proc.returncode == 2 and "positive" in proc.stderr


def test_toy_study_runs_end_to_end_on_tiny_settings(tmp_path):
    out = tmp_path / "study"
    proc = _run(str(ROOT / "tools/toy_study.py"), "--out-dir", str(out), "--variants", "ape", "mixed", "--iters", "2",
                "--train-size", "64", "--resolutions", "48", "80", "--num-train", "2", "--num-val", "1",
                "--image-size", "64x80", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "toy_study.csv") as f:
        rows = [(r["model"], int(r["resolution"])) for r in csv.DictReader(f)]
    assert rows == [("ape", 48), ("ape", 80), ("mixed", 48), ("mixed", 80)]
    assert (out / "runs" / "mixed" / "iter_2.pth").is_file()
    table = (out / "toy_study.md").read_text()
    assert "| ape |" in table and "| mixed |" in table
    _png_ok(out / "toy_study.png")
    proc = _run(str(ROOT / "tools/toy_study.py"), "--out-dir", str(out), "--train-size", "50", cwd=tmp_path)
    assert proc.returncode == 2 and "multiple of the patch size" in proc.stderr
    proc = _run(str(ROOT / "tools/toy_study.py"), "--out-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and "--force" in proc.stderr
