"""Position conventions of DINOv3 / EVA-02 on one trained model: tools/multires_eval.py with a --cfg-options
override that switches 'interpolate' (as pretrained) to 'extrapolate'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
SEG = ROOT / "configs/segmentation/mmseg/dinov3/tiny/upernet_dinov3-tiny_1xb4-400i_tinyade20k-64x64.py"
DET = ROOT / "configs/detection/mmdet/dinov3/tiny/dino-4scale_dinov3-tiny-vitdet_1xb4-lsj-800i_tinycoco.py"
SWITCH = "model.backbone.rope_position=extrapolate"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def _model(options: list[str]):
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import ropevit_dense.adapters.mmseg  # noqa: F401

    cfg = Config.fromfile(str(SEG))
    if options:
        import argparse

        ns = argparse.Namespace()
        DictAction(option_strings=[], dest="o")(None, ns, options)
        cfg.merge_from_dict(ns.o)
    init_default_scope("mmseg")
    return MODELS.build(cfg.model)


def test_convention_switch_on_the_same_trained_model(tiny_ade20k, tmp_path):
    torch.manual_seed(0)
    trained = _model([])
    assert trained.backbone.rope_position == "interpolate"  # DINOv3's pretrained convention is the default
    ckpt = tmp_path / "model.pth"
    torch.save({"state_dict": trained.state_dict(), "meta": {}}, ckpt)

    # the switch changes the backbone's positions on the same weights: equal on the 16 x 16 pretraining grid only
    switched = _model([SWITCH])
    switched.load_state_dict(trained.state_dict())
    assert switched.backbone.rope_position == "extrapolate"
    with torch.no_grad():
        for side, same in ((256, True), (160, False)):
            x = torch.randn(1, 3, side, side)
            a, b = trained.eval().backbone(x)[-1], switched.eval().backbone(x)[-1]
            assert torch.allclose(a, b, atol=1e-5) == same, side

    rows = {}
    for name, extra in (("interpolate", []), ("extrapolate", [SWITCH])):
        out = tmp_path / name
        proc = _run(str(ROOT / "tools/multires_eval.py"), str(SEG), str(ckpt), "--resolutions", "160",
                    "--whole", "--out-dir", str(out), "--name", name, "--cfg-options",
                    f"test_dataloader.dataset.data_root={tiny_ade20k}", "test_dataloader.dataset.indices=2", *extra,
                    cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"| {name} |" in proc.stdout
        rows[name] = (out / "multires.csv").read_text()
        dumped = (out / "runs" / "short160" / SEG.name).read_text()  # the config each test run used
        assert ("rope_position='extrapolate'" in dumped) == (name == "extrapolate"), dumped[:2000]
    assert all(r.count("\n") == 2 for r in rows.values())  # header + one resolution


def test_square_pad_of_lsj_configs_follows_the_test_resolution():
    pytest.importorskip("mmdet")
    from mmengine.config import Config

    from ropevit_dense.evaluation.multires import set_test_resolution

    cfg = set_test_resolution(Config.fromfile(str(DET)), 96)
    resize, pad = cfg.test_dataloader.dataset.pipeline[1:3]
    assert resize.scale == (96, 96) and pad.type == "Pad" and pad.size == (96, 96)
