"""The pieces of the CPU distributed path, in one process: digests, AMP fallback, process-group set-up, tool lookup."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("mmengine")

from ropevit_dense.adapters import dist  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_digests_name_the_parameters_that_diverged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    names = [n for n, _ in model.named_parameters()]
    ref = dist.parameter_digests(model)
    assert ref.shape == (4, 2) and ref.dtype == torch.float64
    torch.testing.assert_close(ref[0], torch.stack((model[0].weight.double().sum(),
                                                    model[0].weight.double().square().sum())))
    assert dist.diverged_parameters(names, [ref, ref.clone(), ref.clone()]) == (0.0, [])

    with torch.no_grad():
        model[1].bias[2] += 1e-6
    worst, bad = dist.diverged_parameters(names, [ref, ref.clone(), dist.parameter_digests(model)])
    assert bad == ["1.bias (rank 2)"] and worst == pytest.approx(1e-6, rel=1e-3)
    assert dist.diverged_parameters(names, [ref, dist.parameter_digests(model)], atol=1e-5)[1] == []
    with pytest.raises(RuntimeError, match="rank 1 holds 3 parameters, rank 0 holds 4"):
        dist.diverged_parameters(names, [ref, ref[:3]])


def test_sync_check_hook_arguments():
    with pytest.raises(ValueError, match="interval must be an int >= 0"):
        dist.DDPSyncCheckHook(interval=-1)
    with pytest.raises(ValueError, match="atol must be >= 0"):
        dist.DDPSyncCheckHook(atol=-1.0)


def test_amp_optim_wrapper_config_trains_in_fp32_without_gpu():
    from mmengine.config import ConfigDict

    amp = ConfigDict(type="AmpOptimWrapper", loss_scale="dynamic", dtype="float16", clip_grad=dict(max_norm=0.01),
                     optimizer=dict(type="AdamW", lr=1e-4), constructor="RoPEOptimWrapperConstructor",
                     paramwise_cfg=dict(norm_decay_mult=0.0), accumulative_counts=2)
    out = dist._fp32_on_cpu(amp)
    assert out == dict(type="OptimWrapper", clip_grad=dict(max_norm=0.01), optimizer=dict(type="AdamW", lr=1e-4),
                       constructor="RoPEOptimWrapperConstructor", paramwise_cfg=dict(norm_decay_mult=0.0),
                       accumulative_counts=2)
    assert amp.type == "AmpOptimWrapper"  # the config itself is left as it is
    several = dict(backbone=dict(amp), head=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1)))
    out = dist._fp32_on_cpu(several)
    assert out["backbone"]["type"] == "OptimWrapper" and "loss_scale" not in out["backbone"]
    assert out["head"] == several["head"]
    plain = dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1))
    assert dist._fp32_on_cpu(plain) is plain


class _Toy(nn.Module):
    """The smallest mmengine-trainable model: ``train_step`` through an optimizer wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a GPU")
def test_runner_builds_fp32_wrapper_where_mmengine_asserts_a_gpu(tmp_path):
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    cfg = dict(type="AmpOptimWrapper", loss_scale="dynamic", optimizer=dict(type="SGD", lr=0.1))
    runner = dist.CPUFallbackRunner(model=_Toy(), work_dir=str(tmp_path / "a"))
    wrapper = runner.build_optim_wrapper(dict(cfg))
    assert type(wrapper) is OptimWrapper
    plain = Runner(model=_Toy(), work_dir=str(tmp_path / "b"))
    with pytest.raises(AssertionError, match="only available training on gpu"):
        plain.build_optim_wrapper(dict(cfg))


def test_ddp_wrapper_config_without_gpu():
    cfg = dist._ddp_cfg(None, find_unused_parameters=False)
    assert cfg == dict(type=dist.CPU_DDP, broadcast_buffers=False, find_unused_parameters=False)
    cfg = dist._ddp_cfg(dict(type="MMDistributedDataParallel", broadcast_buffers=True, detect_anomalous_params=True),
                        find_unused_parameters=True)
    assert cfg == dict(type=dist.CPU_DDP, broadcast_buffers=True, detect_anomalous_params=True,
                       find_unused_parameters=True)
    with pytest.raises(ValueError, match="model_wrapper_cfg.type='MMFullyShardedDataParallel' needs a GPU"):
        dist._ddp_cfg(dict(type="MMFullyShardedDataParallel"), find_unused_parameters=False)


def test_cpu_process_group_from_the_launcher_environment(monkeypatch):
    import torch.distributed as torch_dist

    with pytest.raises(ValueError, match="supports --launcher pytorch or slurm, got 'mpi'"):
        dist.init_cpu_process_group("mpi")
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"):
        dist.init_cpu_process_group("pytorch")
    with pytest.raises(RuntimeError, match="outside a Slurm job step: SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST"):
        dist.init_cpu_process_group("slurm")

    # srun's variables become torch's; MASTER_ADDR given, so no scontrol call
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NODELIST", "node[01-02]")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    assert dist._slurm_env() == dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_PORT=str(port),
                                     MASTER_ADDR="127.0.0.1")
    assert not torch_dist.is_initialized()
    try:
        dist.init_cpu_process_group("slurm", timeout=60)
        assert torch_dist.get_backend() == "gloo" and torch_dist.get_world_size() == 1
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            monkeypatch.delenv(key, raising=False)


def test_entry_points_find_the_framework_script(tmp_path):
    scope, script = dist.framework_script(
        ROOT / "configs/segmentation/mmseg/tiny/mask2former_ropeswin-tiny-mixed_1xb4-400i_tinyade20k-64x64.py", "train")
    assert scope == "mmseg" and script.name == "train.py" and script.parent.name == "tools" and script.is_file()
    scope, script = dist.framework_script(
        ROOT / "configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py", "test")
    assert scope == "mmdet" and script.name == "test.py"
    with pytest.raises(FileNotFoundError, match="config file not found"):
        dist.framework_script(tmp_path / "missing.py", "train")
    other = tmp_path / "other.py"
    other.write_text("default_scope = 'mmpretrain'\n")
    with pytest.raises(ValueError, match="default_scope is 'mmpretrain'"):
        dist.framework_script(other, "train")
    with pytest.raises(ValueError, match="tool must be 'train' or 'test'"):
        dist.framework_script(other, "export")
