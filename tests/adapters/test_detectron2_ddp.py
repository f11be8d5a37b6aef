"""Multi-process detectron2 training on CPUs: ``tools/train_net_d2.py --num-gpus 2`` on a machine without GPUs runs
two gloo processes; losses are finite and fall, both processes hold the same parameters, only rank 0 writes files,
and ``--resume`` continues at the iteration after the last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.detectron2

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "train_net_d2.py"
TINY_CONFIG = REPO / "configs" / "detection" / "detectron2" / "tiny" / "mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py"
SKIP_REASON = ("detectron2 is not installed (it is not on PyPI): install it from its source, "
               "see configs/detection/detectron2/README.md")
IDENTICAL = re.compile(r"parameters identical in all 2 processes after iteration (\d+) \(sha256 ([0-9a-f]{64})\)")

DDP_STEP = """
import json, sys, torch
from detectron2.engine import create_ddp_model as d2_create_ddp_model, launch
from detectron2.utils import comm

def worker(out):
    from ropevit_dense.adapters.d2_engine import create_ddp_model, parameter_digest
    result = {}
    for fp16_compression in (False, True):
        torch.manual_seed(comm.get_rank())  # different weights per process: DDP starts from rank 0's
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        try:
            d2_create_ddp_model(model)
            result["stock"] = "wrapped"
        except Exception as exc:  # detectron2's own wrapper passes device_ids=[local_rank]
            result["stock"] = f"{type(exc).__name__}: {exc}"
        ddp = create_ddp_model(model, broadcast_buffers=False, fp16_compression=fp16_compression)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(3):
            loss = ddp(torch.randn(4, 8)).pow(2).mean()  # different data per process
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        result[f"fp16={fp16_compression}"] = {"digests": comm.all_gather(parameter_digest(ddp)),
                                              "type": type(ddp).__name__}
    if comm.is_main_process():
        with open(out, "w") as fh:
            json.dump(result, fh)

if __name__ == "__main__":
    launch(worker, 2, dist_url="auto", args=(sys.argv[1],))
"""


@pytest.fixture(scope="module")
def d2():
    pytest.importorskip("detectron2", reason=SKIP_REASON)
    from ropevit_dense.adapters import d2_engine

    return d2_engine


def test_cpu_models_are_wrapped_for_gloo_ddp(d2, tmp_path):
    script = tmp_path / "ddp_step.py"
    script.write_text(DDP_STEP)
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "device_ids" in result["stock"], result["stock"]  # what the CPU wrapper is for
    for fp16 in (False, True):  # with and without detectron2's fp16 gradient compression (the recipes' setting)
        run = result[f"fp16={fp16}"]
        assert run["type"] == "DistributedDataParallel"
        assert len(run["digests"]) == 2 and len(set(run["digests"])) == 1, run


def _command(tiny_coco: Path, out: Path, *flags: str, max_iter: int) -> list[str]:
    datasets = []
    for split in ("train", "val"):
        datasets += ["--coco-dataset", f"tiny_coco_{split}",
                     str(tiny_coco / "annotations" / f"instances_{split}.json"), str(tiny_coco / split)]
    return [sys.executable, str(TOOL), "--num-gpus", "2", "--dist-url", "auto", "--config-file", str(TINY_CONFIG),
            *flags, *datasets, f"train.output_dir={out}", f"train.max_iter={max_iter}", "train.checkpointer.period=5",
            "train.eval_period=0", "train.log_period=1", "train.seed=0"]


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-4000:]


def _final_digest(path: Path) -> str:
    from detectron2.config import LazyConfig, instantiate

    from ropevit_dense.adapters.d2_checkpoint import SafeDetectionCheckpointer
    from ropevit_dense.adapters.d2_engine import parameter_digest

    model = instantiate(LazyConfig.load(str(TINY_CONFIG)).model)
    SafeDetectionCheckpointer(model).load(str(path))
    return parameter_digest(model)


@pytest.mark.slow
def test_two_cpu_processes_train_identically_and_resume(d2, tiny_coco, tmp_path):
    cwd, out = tmp_path / "cwd", tmp_path / "run"
    cwd.mkdir()
    _run(_command(tiny_coco, out, max_iter=10), cwd)

    entries = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [e["iteration"] for e in entries] == list(range(10))
    losses = [e["total_loss"] for e in entries]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses  # falling
    log = (out / "log.txt").read_text()
    assert "Rank of current process: 0. World size: 2" in log
    checks = dict(IDENTICAL.findall(log))
    assert set(checks) == {"4", "9"}, checks
    assert checks["9"] == _final_digest(out / "model_final.pth")  # the saved model is what both processes hold

    # only rank 0 writes: one log, one event file, no per-rank files, nothing in the working directory
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if "rank" in n], names
    assert len([n for n in names if n.startswith("events.out.tfevents")]) == 1, names
    assert set(names) - {n for n in names if n.startswith("events.")} == {
        "config.yaml", "last_checkpoint", "log.txt", "metrics.json", "model_0000004.pth", "model_0000009.pth",
        "model_final.pth"}
    assert not list(cwd.iterdir())

    _run(_command(tiny_coco, out, "--resume", max_iter=14), cwd)
    log = (out / "log.txt").read_text()
    assert "Loading from " + str(out / "model_final.pth") in log
    assert "Starting training from iteration 10" in log
    resumed = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()][len(entries):]
    assert [e["iteration"] for e in resumed] == [10, 11, 12, 13]
    assert all(math.isfinite(e["total_loss"]) for e in resumed)
    checks = dict(IDENTICAL.findall(log))
    assert checks["13"] == _final_digest(out / "model_final.pth")
    assert not [p.name for p in out.iterdir() if "rank" in p.name] and not list(cwd.iterdir())
