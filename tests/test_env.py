"""`python -m ropevit_dense.env` reports a working stack."""

import subprocess
import sys

import pytest

import ropevit_dense
from ropevit_dense import env


def test_env_report_runs_and_checks_compiled_ops():
    proc = subprocess.run([sys.executable, "-m", "ropevit_dense.env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for name in ("python", "torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmseg", "openmim", "timm",
                 "detectron2"):
        assert name in lines, proc.stdout
    assert "MultiScaleDeformableAttention, nms work" in lines["mmcv"]
    assert "nms, roi_align work" in lines["torchvision"]
    assert "CUDA available" in lines["torch"]


def test_env_report_fails_when_a_required_piece_is_broken(monkeypatch, capsys):
    def broken():
        raise ImportError("No module named 'mmdet'")

    real = env._version
    monkeypatch.setattr(env, "_version", lambda name: broken() if name == "mmdet" else real(name))
    assert env.main([]) == 1
    out = capsys.readouterr().out
    assert "required components missing or broken: mmdet" in out


def test_importing_the_package_imports_no_framework():
    code = (
        "import sys, ropevit_dense, ropevit_dense.checkpoints, ropevit_dense.data;"
        "bad=[m for m in ('mmdet','mmseg','mmcv','mmengine','detectron2') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("attr", ["__version__"])
def test_version(attr):
    assert getattr(ropevit_dense, attr)
