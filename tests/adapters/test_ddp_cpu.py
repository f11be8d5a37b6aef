"""Two training processes over gloo on a CPU, through the commands users run on GPUs: ``mim train ... --launcher
pytorch --gpus 2`` with :class:`~ropevit_dense.adapters.dist.CPUFallbackRunner` selected by ``runner_type`` (DINO,
Mask2Former), and ``tools/dist_train.sh`` / ``tools/dist_test.sh``, which select it themselves (UperNet).

For the tiny DINO RoPE-ViT, UperNet RoPE-ViT and Mask2Former RoPE-Swin: finite losses that go down, identical
parameters on both ranks (``DDPSyncCheckHook``), checkpoints and logs written once (by rank 0), and ``--resume``
continuing at the next iteration on both ranks. About 25-45 s per model on 2 quiet cores (two short runs each).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")


ROOT = Path(__file__).resolve().parents[2]
MIM = shutil.which("mim", path=str(Path(sys.executable).parent)) or shutil.which("mim")
TINY_DET = ROOT / "configs/detection/mmdet/tiny"
TINY_SEG = ROOT / "configs/segmentation/mmseg/tiny"
# name: (framework, tiny config, launch command)
CASES = {
    "dino-ropevit": ("mmdet", TINY_DET / "dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py", "mim"),
    "upernet-ropevit": ("mmseg", TINY_SEG / "upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py", "dist_train"),
    "mask2former-ropeswin": ("mmseg", TINY_SEG / "mask2former_ropeswin-tiny-mixed_1xb4-400i_tinyade20k-64x64.py",
                             "mim"),
}
# The same images in the same form at every iteration (each rank always sees its own share of a fixed subset): the
# logged loss of rank 0 is then comparable from one iteration to the next. Segmentation takes 2 images per process,
# as the BatchNorm of UperNet's pooling branch needs more than one value per channel (SyncBatchNorm becomes BatchNorm
# on a CPU).
FIXED_INPUTS = {
    "mmdet": """
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='Resize', scale=(160, 128), keep_ratio=True), dict(type='PackDetInputs')]
train_dataloader = dict(batch_size=1, sampler=dict(type='DefaultSampler', shuffle=False), batch_sampler=None,
                        dataset=dict(indices=2, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(indices=2))
""",
    "mmseg": """
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                  dict(type='Resize', scale=(64, 64), keep_ratio=False), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, sampler=dict(type='InfiniteSampler', shuffle=False),
                        dataset=dict(indices=4, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(indices=2))
""",
}
LOSS = re.compile(r"Iter\(train\) \[\s*(\d+)/\d+\].*?\sloss: (\S+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data_options(package: str, tiny_coco: Path, tiny_ade20k: Path) -> list[str]:
    if package == "mmdet":
        r = f"{tiny_coco}/"
        return [f"{k}.dataset.data_root={r}" for k in ("train_dataloader", "val_dataloader", "test_dataloader")] + [
            f"val_evaluator.ann_file={r}annotations/instances_val.json",
            f"test_evaluator.ann_file={r}annotations/instances_val.json"]
    return [f"{k}.dataset.data_root={tiny_ade20k}" for k in ("train_dataloader", "val_dataloader", "test_dataloader")]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHON=sys.executable,
               MASTER_PORT=str(_free_port()))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    first_error = out.find("Traceback")
    assert proc.returncode == 0, out[first_error:first_error + 6000] if first_error >= 0 else out[-6000:]
    return out


def _train_2proc(launch: str, package: str, config: Path, work: Path, *args: str) -> str:
    if launch == "mim":
        assert MIM, "the mim command is not installed"
        cmd = [MIM, "train", package, str(config), "--launcher", "pytorch", "--gpus", "2", "--port",
               str(_free_port()), "--work-dir", str(work), *args]
    else:
        cmd = ["bash", str(ROOT / "tools/dist_train.sh"), str(config), "2", "--work-dir", str(work), *args]
    return _run(cmd, work.parent)


def _losses(out: str) -> dict[int, float]:
    return {int(i): float(v) for i, v in LOSS.findall(out)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_process_cpu_training_and_resume(case, tiny_coco, tiny_ade20k, tmp_path):
    from ropevit_dense.adapters.dist import CPU_RUNNER
    from ropevit_dense.checkpoints import load_file

    package, tiny, launch = CASES[case]
    config = tmp_path / f"{case}_ddp.py"
    # mim runs the framework's train script as it is: the runner is chosen by the config; dist_train.sh chooses it
    runner = f"runner_type = '{CPU_RUNNER}'\n" if launch == "mim" else ""
    config.write_text(f"_base_ = ['{tiny}']\n{runner}"
                      "custom_hooks = [dict(type='ropevit_dense.adapters.dist.DDPSyncCheckHook', interval=2)]\n"
                      + FIXED_INPUTS[package])
    work = tmp_path / "work"
    common = ["train_cfg.val_interval=100", "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=2",
              *_data_options(package, tiny_coco, tiny_ade20k)]

    out = _train_2proc(launch, package, config, work, "--cfg-options", "train_cfg.max_iters=4", *common)
    assert "Distributed training: True" in out and "no GPU: the process group uses gloo" in out
    for it in (2, 4):
        assert f"parameters identical on 2 ranks at iteration {it} " in out, out[-3000:]
    first = _losses(out)
    assert sorted(first) == [1, 2, 3, 4], out[-3000:]

    # rank 0 alone writes: one log file, one record per iteration in the scalar log, the checkpoints
    logs = sorted(work.rglob("*.log"))
    assert len(logs) == 1, logs
    log_text = logs[0].read_text()
    assert all(log_text.count(f"Iter(train) [{i}/4]") == 1 for i in range(1, 5))
    records = [json.loads(line) for line in next(work.rglob("scalars.json")).read_text().splitlines()]
    assert sorted(r["iter"] for r in records if "loss" in r) == [1, 2, 3, 4]
    assert {p.name for p in work.glob("*.pth")} == {"iter_2.pth", "iter_4.pth"}
    assert load_file(work / "iter_4.pth")["meta"]["iter"] == 4

    out = _train_2proc(launch, package, config, work, "--resume", "--cfg-options", "train_cfg.max_iters=6",
                       *common)
    assert "resumed epoch: 0, iter: 4" in out, out[-3000:]
    assert "Iter(train) [5/6]" in out and "Iter(train) [1/6]" not in out
    # both ranks resumed model and optimizer state: the replicas still agree two optimizer steps later
    assert "parameters identical on 2 ranks at iteration 6 " in out, out[-3000:]
    assert load_file(work / "iter_6.pth")["meta"]["iter"] == 6

    losses = {**first, **_losses(out)}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert (losses[5] + losses[6]) / 2 < (losses[1] + losses[2]) / 2, losses

    if launch == "dist_train":  # the test script in two processes too (mmseg's builds mmengine's own Runner)
        out = _run(["bash", str(ROOT / "tools/dist_test.sh"), str(config), str(work / "iter_6.pth"), "2", "--work-dir",
                    str(tmp_path / "test"), "--cfg-options", *common[3:]], tmp_path)
        assert re.search(r"Iter\(test\) \[\d+/\d+\].*mIoU: \d+\.\d+", out), out[-3000:]
