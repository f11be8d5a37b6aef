"""Multi-process training with mmengine on machines with or without a GPU.

mmengine 0.10's ``Runner`` assumes an accelerator as soon as it is launched with ``--launcher pytorch|slurm``:
``init_dist`` calls ``torch.cuda.set_device`` before creating the process group, the model is wrapped in DDP with
``device_ids=[LOCAL_RANK]`` (which CPU modules refuse), ``SyncBatchNorm`` refuses CPU tensors in training, and
``AmpOptimWrapper`` asserts a GPU. :class:`CPUFallbackRunner` is mmengine's ``Runner`` unchanged on a machine with a
CUDA / NPU / MLU / MUSA device; on a machine without one it uses mmengine's own extension points instead:

* ``setup_env``: creates the gloo process group itself from the launcher's environment (torchrun / ``torch.distributed
  .launch``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; Slurm: ``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_NODELIST``), after which mmengine skips its own ``init_dist``;
* ``wrap_model``: :class:`CPUDistributedDataParallel`, mmengine's DDP wrapper with ``device_ids=None`` and
  ``SyncBatchNorm`` layers reverted to ``BatchNorm`` (per-process statistics: the only kind a CPU has); the other
  ``model_wrapper_cfg`` settings are honoured;
* ``build_optim_wrapper``: an ``AmpOptimWrapper`` config trains in fp32 with a plain ``OptimWrapper`` (same optimizer,
  gradient clipping and accumulation), with a warning.

Select it with the config key ``runner_type`` (mmengine resolves the dotted path itself, no registration needed)::

    mim train mmdet <config> --launcher pytorch --gpus 2 \\
        --cfg-options runner_type=ropevit_dense.adapters.dist.CPUFallbackRunner

``tools/train.py`` / ``tools/test.py`` (and the ``dist_*`` / ``slurm_*`` scripts over them) run mmdet's or mmseg's own
train / test script (picked by the config's ``default_scope``) and select it automatically (:func:`run_tool`).
:class:`DDPSyncCheckHook` checks that every rank holds the same parameters (``custom_hooks``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.distributed as torch_dist
from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
from mmengine.dist import all_gather, get_rank, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import Runner
from torch import nn

__all__ = ["CPU_DDP", "CPU_RUNNER", "CPUDistributedDataParallel", "CPUFallbackRunner", "DDPSyncCheckHook",
           "diverged_parameters", "framework_script", "has_accelerator", "init_cpu_process_group",
           "parameter_digests", "run_tool"]

#: the value of ``runner_type`` that selects :class:`CPUFallbackRunner`
CPU_RUNNER = f"{__name__}.CPUFallbackRunner"

_AMP_ONLY_KEYS = ("loss_scale", "dtype", "use_fsdp")


def has_accelerator() -> bool:
    """True where mmengine's distributed and AMP code paths work as they are (CUDA, NPU, MLU or MUSA)."""
    return is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()


def _slurm_env() -> dict[str, str]:
    """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` from a Slurm task's variables."""
    missing = [k for k in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST") if k not in os.environ]
    if missing:
        raise RuntimeError(f"--launcher slurm outside a Slurm job step: {', '.join(missing)} not set "
                           "(start the processes with srun)")
    env = {"RANK": os.environ["SLURM_PROCID"], "WORLD_SIZE": os.environ["SLURM_NTASKS"],
           "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0"), "MASTER_PORT": os.environ.get("MASTER_PORT", "29500")}
    if "MASTER_ADDR" in os.environ:
        env["MASTER_ADDR"] = os.environ["MASTER_ADDR"]
    else:  # the first host of the allocation, as Slurm itself expands the node list
        nodes = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_NODELIST"]], capture_output=True,
                               text=True, check=True).stdout.split()
        env["MASTER_ADDR"] = nodes[0]
    return env


def init_cpu_process_group(launcher: str, *, timeout: Optional[float] = None) -> None:
    """Create the default gloo process group for ``launcher`` ('pytorch' or 'slurm') without touching CUDA.

    Args:
        launcher (str): ``'pytorch'`` (torchrun, ``torch.distributed.launch``, ``mim train --launcher pytorch``) or
            ``'slurm'`` (``srun``); their environment variables give rank, world size and rendezvous address.
        timeout (float | None): seconds before a collective gives up; None keeps torch's default.

    Raises:
        ValueError: for another launcher. RuntimeError: when the launcher's variables are missing.
    """
    if torch_dist.is_initialized():
        return
    if launcher == "slurm":
        os.environ.update(_slurm_env())
    elif launcher != "pytorch":
        raise ValueError(f"the CPU distributed path supports --launcher pytorch or slurm, got '{launcher}'")
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"--launcher {launcher} without its environment ({', '.join(missing)} not set): start the "
                           "processes with torchrun, tools/dist_train.sh or mim train --launcher pytorch")
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout))
    torch_dist.init_process_group(backend="gloo", init_method="env://", rank=int(os.environ["RANK"]),
                                  world_size=int(os.environ["WORLD_SIZE"]), **kwargs)


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a model that stays on the CPU: ``device_ids=None``, and ``SyncBatchNorm`` layers
    reverted to ``BatchNorm`` (torch's DDP refuses them on CPU modules; statistics become per process).

    ``model_wrapper_cfg=dict(type='ropevit_dense.adapters.dist.CPUDistributedDataParallel')`` selects it;
    :class:`CPUFallbackRunner` does so by itself on a machine without a GPU.
    """

    def __init__(self, module: nn.Module, device_ids: Optional[list] = None, output_device: Optional[Any] = None,
                 **kwargs: Any) -> None:
        if device_ids is not None or output_device is not None:
            print_log(f"device_ids={device_ids} / output_device={output_device} ignored: the model stays on the CPU",
                      logger="current", level=logging.WARNING)
        if any(isinstance(m, nn.SyncBatchNorm) for m in module.modules()):
            print_log("no GPU: SyncBatchNorm layers become BatchNorm (statistics per process, not across processes)",
                      logger="current", level=logging.WARNING)
            module = revert_sync_batchnorm(module)
        super().__init__(module=module, device_ids=None, output_device=None, **kwargs)


#: the ``model_wrapper_cfg.type`` that selects :class:`CPUDistributedDataParallel`
CPU_DDP = f"{__name__}.CPUDistributedDataParallel"


def _ddp_cfg(model_wrapper_cfg: Optional[dict], find_unused_parameters: bool) -> dict:
    """The DDP wrapper config for CPU modules: the user's settings, with :class:`CPUDistributedDataParallel`."""
    cfg = dict(broadcast_buffers=False, find_unused_parameters=find_unused_parameters)
    cfg.update(model_wrapper_cfg or {})
    if cfg.get("type", "MMDistributedDataParallel") not in ("MMDistributedDataParallel", CPU_DDP):
        raise ValueError(f"model_wrapper_cfg.type={cfg['type']!r} needs a GPU; without one, models are wrapped in "
                         f"{CPU_DDP}")
    cfg["type"] = CPU_DDP
    return cfg


class CPUFallbackRunner(Runner):
    """mmengine's ``Runner``, which also trains and tests on machines without a GPU, in one or several processes.

    With a CUDA / NPU / MLU / MUSA device nothing differs from ``Runner``. Without one (see the module docstring):
    gloo process group created here, DDP with ``device_ids=None``, ``SyncBatchNorm`` reverted to ``BatchNorm``, and
    ``AmpOptimWrapper`` replaced by fp32 ``OptimWrapper``. Select it with
    ``runner_type='ropevit_dense.adapters.dist.CPUFallbackRunner'`` (:data:`CPU_RUNNER`).
    """

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not is_distributed() and not has_accelerator():
            dist_cfg = dict(env_cfg.get("dist_cfg") or {})
            backend = dist_cfg.get("backend", "nccl")
            if backend != "gloo":
                print_log(f"no GPU: the process group uses gloo instead of env_cfg.dist_cfg.backend='{backend}'",
                          logger="current", level=logging.WARNING)
            init_cpu_process_group(self.launcher, timeout=dist_cfg.get("timeout"))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model: nn.Module) -> nn.Module:
        if not self.distributed or has_accelerator() or is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        if self.cfg.get("sync_bn") is not None:
            raise ValueError(f"sync_bn={self.cfg.sync_bn!r}: synchronised BatchNorm needs a GPU, and there is none")
        cfg = _ddp_cfg(model_wrapper_cfg, bool(self.cfg.get("find_unused_parameters", False)))
        return super().wrap_model(cfg, model)

    def build_optim_wrapper(self, optim_wrapper: Union[dict, Any]) -> Any:
        if isinstance(optim_wrapper, dict) and not has_accelerator():
            optim_wrapper = _fp32_on_cpu(optim_wrapper)
        return super().build_optim_wrapper(optim_wrapper)


def _fp32_on_cpu(cfg: dict) -> dict:
    """An ``AmpOptimWrapper`` config (or a dict of them) as fp32 ``OptimWrapper`` configs, for a machine without GPU."""
    if cfg.get("type") == "AmpOptimWrapper":
        out = type(cfg)({k: v for k, v in cfg.items() if k not in _AMP_ONLY_KEYS})
        out["type"] = "OptimWrapper"
        print_log("no GPU: AmpOptimWrapper (fp16 autocast + loss scaling needs a GPU) trains in fp32 with OptimWrapper "
                  "(same optimizer, clip_grad and accumulative_counts)", logger="current", level=logging.WARNING)
        return out
    if "type" not in cfg and "constructor" not in cfg and cfg and all(isinstance(v, dict) for v in cfg.values()):
        return type(cfg)({k: _fp32_on_cpu(v) for k, v in cfg.items()})  # one wrapper per optimizer
    return cfg


class DDPSyncCheckHook(Hook):
    """Check that every rank holds the same parameters, every ``interval`` iterations and after training.

    Each rank reduces every parameter to two float64 numbers (sum and sum of squares); rank 0 compares all ranks'
    digests and logs ``parameters identical on N ranks at iteration i``, or raises ``RuntimeError`` naming the first
    parameters that differ by more than ``atol`` (DDP averages gradients with one all-reduce, so replicas are
    bitwise identical: the default tolerance is 0). Single-process runs are skipped.

    Args:
        interval (int): iterations between checks; 0 checks only after training. Default: 0.
        atol (float): largest digest difference taken as equal. Default: 0.
    """

    priority = "LOW"

    def __init__(self, interval: int = 0, atol: float = 0.0) -> None:
        if not isinstance(interval, int) or interval < 0:
            raise ValueError(f"DDPSyncCheckHook interval must be an int >= 0, got {interval!r}")
        if atol < 0:
            raise ValueError(f"DDPSyncCheckHook atol must be >= 0, got {atol}")
        self.interval, self.atol = interval, float(atol)
        self._checked_at: Optional[int] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self.check(runner, runner.iter + 1)  # runner.iter counts this iteration only after the hooks

    def after_train(self, runner) -> None:
        if self._checked_at != runner.iter:
            self.check(runner, runner.iter)

    def check(self, runner, iteration: int) -> None:
        """Compare the parameter digests of all ranks (a collective: every rank must call it)."""
        if get_world_size() < 2:
            return
        self._checked_at = iteration
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        names = [n for n, _ in model.named_parameters()]
        gathered = all_gather(parameter_digests(model))
        if get_rank() != 0:
            return
        worst, bad = diverged_parameters(names, gathered, self.atol)
        if bad:
            raise RuntimeError(f"DDP replicas diverged at iteration {iteration}: {len(bad)} parameters differ from "
                               f"rank 0, e.g. {', '.join(bad[:5])} (largest digest difference {worst:.3e})")
        runner.logger.info(f"DDPSyncCheckHook: parameters identical on {len(gathered)} ranks at iteration "
                           f"{iteration} ({len(names)} tensors, largest digest difference {worst:.1e})")


def parameter_digests(model: nn.Module) -> torch.Tensor:
    """``(num_parameters, 2)`` float64 on the CPU: sum and sum of squares of each parameter, in ``named_parameters``
    order."""
    with torch.no_grad():
        rows = [torch.stack((t.sum(), t.square().sum())) for t in (p.detach().to(torch.float64)
                                                                     for p in model.parameters())]
    return torch.stack(rows).cpu() if rows else torch.zeros(0, 2, dtype=torch.float64)


def diverged_parameters(names: list[str], digests: list[torch.Tensor], atol: float = 0.0) -> tuple[float, list[str]]:
    """Compare every rank's :func:`parameter_digests` with rank 0's (``digests[0]``).

    Returns:
        tuple[float, list[str]]: the largest difference, and ``"<name> (rank r)"`` for each parameter of each rank
        that differs from rank 0 by more than ``atol``.
    """
    ref = digests[0].cpu()
    worst, bad = 0.0, []
    for rank, other in enumerate(digests[1:], start=1):
        if other.shape != ref.shape:
            raise RuntimeError(f"rank {rank} holds {other.shape[0]} parameters, rank 0 holds {ref.shape[0]}")
        diff = (other.cpu() - ref).abs().amax(dim=1) if ref.numel() else ref.new_zeros(0)
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        bad += [f"{names[i]} (rank {rank})" for i in torch.nonzero(diff > atol).flatten().tolist()]
    return worst, bad


# -- the train / test entry points ------------------------------------------------------------------------------------
_FRAMEWORKS = ("mmdet", "mmseg")


def framework_script(config: Union[str, os.PathLike], tool: str) -> tuple[str, Path]:
    """The framework a config belongs to (its ``default_scope``) and that framework's own ``train.py`` / ``test.py``.

    Raises:
        ValueError: for a config of another framework, or a tool other than train / test.
        FileNotFoundError: for a missing config, or a framework installed without its tools.
    """
    from mmengine.config import Config

    if tool not in ("train", "test"):
        raise ValueError(f"tool must be 'train' or 'test', got '{tool}'")
    if not Path(config).is_file():
        raise FileNotFoundError(f"config file not found: {config}")
    scope = Config.fromfile(str(config)).get("default_scope")
    if scope not in _FRAMEWORKS:
        raise ValueError(f"{config}: default_scope is {scope!r}; these entry points run mmdet or mmseg configs "
                         "(detectron2 configs train with tools/train_net_d2.py)")
    spec = importlib.util.find_spec(scope)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{config} is a {scope} config, but {scope} is not installed "
                                f"(pip install -e .[{scope}])")
    script = Path(spec.origin).parent / ".mim" / "tools" / f"{tool}.py"
    if not script.is_file():
        raise FileNotFoundError(f"{scope} is installed without its tools ({script} is missing): reinstall it with pip")
    return scope, script


def run_tool(tool: str, argv: Optional[list[str]] = None) -> None:
    """Run mmdet's or mmseg's own ``tools/<tool>.py`` on ``argv`` (its command line, config first), such that it
    also works without a GPU.

    Training gets ``runner_type=`` :data:`CPU_RUNNER` unless the config chooses a runner (on a GPU machine it is
    mmengine's ``Runner``). mmseg's test script builds mmengine's ``Runner`` whatever ``runner_type`` says, so a
    multi-process test without a GPU creates the gloo process group here first (mmengine then skips its own
    ``init_dist``) and gets ``model_wrapper_cfg.type=`` :data:`CPU_DDP`.
    """
    from mmengine.config import Config, DictAction

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("config", nargs="?")
    parser.add_argument("--launcher", default="none")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    known, _ = parser.parse_known_args(argv)
    if known.config is None or known.config.startswith("-"):
        raise SystemExit(f"usage: tools/{tool}.py CONFIG [options of mmdet's / mmseg's tools/{tool}.py]")
    _, script = framework_script(known.config, tool)
    extra: dict[str, Any] = {}
    if tool == "train":
        cfg = Config.fromfile(known.config)
        if "runner_type" not in cfg and "runner_type" not in known.cfg_options:
            extra["runner_type"] = CPU_RUNNER
    elif known.launcher in ("pytorch", "slurm") and not has_accelerator():
        init_cpu_process_group(known.launcher)
        extra.update({"model_wrapper_cfg.type": CPU_DDP, "model_wrapper_cfg.broadcast_buffers": "False"})
    if extra:
        argv += ["--cfg-options", *(f"{k}={v}" for k, v in extra.items())]
    old_argv = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old_argv
