"""No detectron2 entry point of the package runs code from a checkpoint: a pickle payload (which would create a
marker file) is refused with ``UnsafeCheckpointError`` by ``tools/train_net_d2.py`` (train init, ``--resume``,
``--eval-only``), by the backbones' ``pretrained=`` in a LazyConfig, and by ``tools/convert_checkpoint.py``; the
marker never appears. detectron2's own model-zoo ``.pkl`` layout (numpy arrays, ``__author__``,
``matching_heuristics``) and Caffe2 ``blobs`` files still load.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.detectron2

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "detection" / "detectron2" / "tiny" / "mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py"
SKIP_REASON = ("detectron2 is not installed (it is not on PyPI): install it from its source, "
               "see configs/detection/detectron2/README.md")


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def d2():
    pytest.importorskip("detectron2", reason=SKIP_REASON)
    from ropevit_dense.adapters import d2_checkpoint

    return d2_checkpoint


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool(d2):
    return _load_script("train_net_d2")


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """A payload in each format a detectron2 entry point reads: a plain pickle and a torch file."""
    folder.mkdir(parents=True, exist_ok=True)
    pkl, pth = folder / "evil.pkl", folder / "evil.pth"
    pkl.write_bytes(pickle.dumps({"model": {"w": np.zeros(2, np.float32)}, "__author__": "x", "p": Payload(marker)}))
    torch.save({"model": {"w": torch.zeros(2)}, "iteration": 3, "p": Payload(marker)}, pth)
    return {"pkl": pkl, "pth": pth}


def _args(tiny_coco: Path, out: Path, *extra: str) -> list[str]:
    datasets = []
    for split in ("train", "val"):
        datasets += ["--coco-dataset", f"tiny_coco_{split}",
                     str(tiny_coco / "annotations" / f"instances_{split}.json"), str(tiny_coco / split)]
    return ["--config-file", str(TINY_CONFIG), *datasets, *extra, f"train.output_dir={out}", "train.max_iter=1",
            "train.eval_period=0"]


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_train_init_eval_only_and_resume_refuse_a_payload(tool, tiny_coco, tmp_path, kind):
    from ropevit_dense.checkpoints import UnsafeCheckpointError

    marker = tmp_path / "pwned"
    evil = _evil_files(tmp_path / "files", marker)[kind]
    parser = tool.build_parser()
    out = tmp_path / "run"
    cases = {
        "train init": _args(tiny_coco, out, f"train.init_checkpoint={evil}"),
        "eval-only": _args(tiny_coco, out, "--eval-only", f"train.init_checkpoint={evil}"),
    }
    for name, argv in cases.items():
        with pytest.raises(UnsafeCheckpointError, match=rf"refusing to load '.*evil.{kind}'.*posix.system"):
            tool.main(parser.parse_args(argv))
        assert not marker.exists(), f"{name}: the checkpoint ran code"
    # --resume: the output folder's last checkpoint is the payload; it is refused, not skipped for an older one
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    good = resumed / "model_0000000.pth"
    torch.save({"model": {}, "iteration": 0}, good)
    (resumed / f"model_0000001.{kind}").write_bytes(evil.read_bytes())
    (resumed / "last_checkpoint").write_text(f"model_0000001.{kind}")
    with pytest.raises(UnsafeCheckpointError, match=rf"refusing to load '.*model_0000001.{kind}'"):
        tool.main(parser.parse_args(["--resume", *_args(tiny_coco, resumed)]))
    assert not marker.exists(), "--resume: the checkpoint ran code"


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_lazyconfig_pretrained_refuses_a_payload(d2, tmp_path, kind):
    from detectron2.config import LazyConfig, instantiate

    from ropevit_dense.checkpoints import UnsafeCheckpointError

    marker = tmp_path / "pwned"
    evil = _evil_files(tmp_path, marker)[kind]
    cfg = LazyConfig.load(str(TINY_CONFIG))
    cfg.model.backbone.net.pretrained = str(evil)
    with pytest.raises(UnsafeCheckpointError, match=rf"refusing to load '.*evil.{kind}'"):
        instantiate(cfg.model.backbone)
    assert not marker.exists(), "pretrained=: the checkpoint ran code"


def test_converter_refuses_a_payload(d2, tmp_path, capsys):
    conv = _load_script("convert_checkpoint")
    marker = tmp_path / "pwned"
    for kind, evil in _evil_files(tmp_path, marker).items():
        out = tmp_path / f"out_{kind}.pth"
        assert conv.main([str(evil), str(out)]) == 2
        assert "refusing to load" in capsys.readouterr().err
        assert not out.exists()
    assert not marker.exists(), "convert_checkpoint: the checkpoint ran code"


def _tiny_model():
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(TINY_CONFIG))
    return instantiate(cfg.model).eval()


def test_model_zoo_and_caffe2_pickles_still_load(d2, tmp_path):
    """detectron2's model-zoo layout loads as detectron2's own checkpointer loads it; Caffe2 files are recognised."""
    from detectron2.checkpoint import DetectionCheckpointer

    torch.manual_seed(0)
    src = _tiny_model()
    arrays = {k: v.numpy() for k, v in src.state_dict().items()}
    for protocol in (2, 4):
        path = tmp_path / f"model_final_{protocol}.pkl"
        path.write_bytes(pickle.dumps({"model": arrays, "__author__": "Detectron2 Model Zoo",
                                       "matching_heuristics": True}, protocol=protocol))
        torch.manual_seed(1)
        ours, theirs = _tiny_model(), _tiny_model()
        d2.SafeDetectionCheckpointer(ours).load(str(path))
        DetectionCheckpointer(theirs).load(str(path))  # plain pickle: only on this file written by the test
        for k, v in src.state_dict().items():
            assert torch.equal(ours.state_dict()[k], v), k
            assert torch.equal(theirs.state_dict()[k], v), k

    caffe2 = tmp_path / "R-50.pkl"
    blobs = {"conv1_w": np.ones((4, 3, 7, 7), np.float32), "conv1_w_momentum": np.zeros((4, 3, 7, 7), np.float32)}
    caffe2.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    checkpointer = d2.SafeDetectionCheckpointer(torch.nn.Conv2d(3, 4, 7))
    loaded = checkpointer._load_file(str(caffe2))
    assert loaded["__author__"] == "Caffe2" and loaded["matching_heuristics"] is True
    assert set(loaded["model"]) == {"conv1_w"}  # optimizer momenta dropped, as detectron2 does


def test_safe_checkpointer_round_trips_a_training_checkpoint(d2, tmp_path):
    """What the trainer writes (model, optimizer, scheduler, iteration, hook states) passes the allowlist."""
    from detectron2.engine import SimpleTrainer

    torch.manual_seed(0)
    model = _tiny_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = SimpleTrainer(model, [], optimizer)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)
    checkpointer = d2.SafeDetectionCheckpointer(model, str(tmp_path), trainer=trainer, scheduler=scheduler)
    checkpointer.save("model_0000004", iteration=4)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert not list(tmp_path.glob(".*.tmp"))
    other = _tiny_model()
    other_optimizer = torch.optim.AdamW(other.parameters(), lr=5.0)
    other_scheduler = torch.optim.lr_scheduler.StepLR(other_optimizer, step_size=7)
    extra = d2.SafeDetectionCheckpointer(other, str(tmp_path), trainer=SimpleTrainer(other, [], other_optimizer),
                                         scheduler=other_scheduler).resume_or_load("", resume=True)
    assert extra["iteration"] == 4
    assert other_optimizer.param_groups[0]["lr"] == 1e-3 and other_scheduler.step_size == 3
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
