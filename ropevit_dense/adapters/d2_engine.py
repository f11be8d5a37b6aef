"""Training plumbing for detectron2 LazyConfigs: DDP on GPUs or CPUs, a clear AMP check, resumable data and random
streams, and a check that every process holds the same parameters.

* :func:`create_ddp_model` -- detectron2's ``create_ddp_model`` passes ``device_ids=[local_rank]``, which
  ``DistributedDataParallel`` refuses for a CPU module; here a CPU model is wrapped with ``device_ids=None``
  (detectron2's ``launch`` already picks the gloo backend when there is no GPU), so ``--num-gpus N`` runs N CPU
  processes on a machine without GPUs.
* :func:`check_amp` -- detectron2's ``AMPTrainer`` (fp16 autocast + ``GradScaler``) needs CUDA and otherwise
  stops at its first step on an assertion; the check names the setting to change before anything is built.
* :class:`ResumableTrainLoader` and :class:`ReseedHook` -- with ``train.seed`` set, every checkpoint iteration
  starts a new segment: all random generators are re-seeded and the training data stream restarts, both from
  ``(train.seed, iteration)``. A run resumed from the checkpoint of iteration ``k`` starts the same segment, so it
  sees the same images, augmentations and sampled proposals as the uninterrupted run from ``k + 1`` on (exactly
  with ``num_workers=0``; with worker processes as well, since their seeds derive from the re-seeded generator).
  Without ``train.seed`` the loader is detectron2's own and a resumed run draws fresh random numbers.
* :class:`MetricHistoryHook` -- the logged (smoothed) losses of a resumed run continue those of the run it resumes.
* :class:`ReplicaCheckHook` -- at every checkpoint and at the end, all processes compare a hash of their parameters
  (rank 0 logs it); a difference stops training.

Importing this module needs detectron2.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetFromList
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import HookBase
from detectron2.engine import create_ddp_model as _d2_create_ddp_model
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.registry import locate
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)

__all__ = ["MetricHistoryHook", "ReplicaCheckHook", "ReseedHook", "ResumableTrainLoader", "check_amp",
           "create_ddp_model", "parameter_digest", "segment_seed"]


# -- DDP and precision -------------------------------------------------------------------------------------------
def create_ddp_model(model: nn.Module, *, fp16_compression: bool = False, **kwargs: Any) -> nn.Module:
    """detectron2's ``create_ddp_model`` for a model on a GPU or on the CPU.

    Args:
        model (nn.Module): the model, already on its device.
        fp16_compression (bool): all-reduce gradients in fp16 (detectron2's ``train.ddp.fp16_compression``).
            Default: False.
        **kwargs: arguments of ``DistributedDataParallel`` (``broadcast_buffers``, ``find_unused_parameters``).

    Returns:
        nn.Module: ``model`` itself in a single process, otherwise the DDP wrapper.
    """
    if comm.get_world_size() > 1:
        device = next(model.parameters()).device
        if device.type == "cpu":
            kwargs.setdefault("device_ids", None)  # a CPU module takes no device ids (gloo)
    return _d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


def check_amp(cfg: DictConfig) -> None:
    """Refuse ``train.amp.enabled=True`` where detectron2's ``AMPTrainer`` cannot run (no CUDA device).

    Raises:
        ValueError: AMP is asked for with ``train.device`` not a CUDA device, or with no CUDA device available.
    """
    if not cfg.train.amp.enabled:
        return
    device = torch.device(cfg.train.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        where = f"train.device is '{cfg.train.device}'" if device.type != "cuda" else "no CUDA device is available"
        raise ValueError(
            f"train.amp.enabled=True trains with detectron2's AMPTrainer (fp16 autocast and GradScaler), which "
            f"needs a CUDA device, but {where}. Train in fp32 on this machine with train.amp.enabled=False "
            "(and train.device=cpu).")


# -- resumable random streams ------------------------------------------------------------------------------------
def segment_seed(seed: int, iteration: int, rank: Optional[int] = None) -> int:
    """A 31-bit seed derived from ``(seed, iteration[, rank])``; without ``rank`` it is shared by all processes."""
    entropy = [seed, iteration] if rank is None else [seed, iteration, rank + 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


class ResumableTrainLoader:
    """An endless iterable over ``cfg.dataloader.train`` whose data stream can be restarted from a seed.

    The dataset and mapper are built once; :meth:`restart` builds the loader again around them with a
    ``TrainingSampler`` seeded with the given seed (the same in every process, which each take their share), so the
    stream after a restart depends on that seed only. The trainer iterates this object once; restarts take effect at
    the next batch.

    Args:
        loader_cfg (DictConfig): the LazyConfig of a loader that takes ``dataset`` and ``sampler`` arguments, as
            detectron2's ``build_detection_train_loader`` (e.g. ``cfg.dataloader.train``).

    Raises:
        TypeError: the loader function takes no ``sampler`` argument or its dataset has no length.
    """

    def __init__(self, loader_cfg: DictConfig) -> None:
        target = loader_cfg["_target_"]
        self._build = locate(target) if isinstance(target, str) else target
        if "sampler" not in inspect.signature(self._build).parameters:
            raise TypeError(f"the training loader {getattr(self._build, '__name__', self._build)} takes no "
                            "'sampler' argument")
        self._kwargs = {k: instantiate(v) for k, v in loader_cfg.items() if k not in ("_target_", "sampler")}
        dataset = self._kwargs.get("dataset")
        if isinstance(dataset, list):  # serialized once, not at every restart
            dataset = self._kwargs["dataset"] = DatasetFromList(dataset, copy=False)
        try:
            self._size = len(dataset)
        except TypeError:
            raise TypeError("the training dataset has no length, so its sampler cannot be seeded") from None
        self._iterator: Optional[Iterator] = None

    def restart(self, seed: int) -> None:
        """Start a new data stream drawn from ``seed`` (the same in every process)."""
        sampler = TrainingSampler(self._size, shuffle=True, seed=seed)
        self._iterator = iter(self._build(**self._kwargs, sampler=sampler))

    def __iter__(self) -> Iterator:
        while True:
            if self._iterator is None:
                raise RuntimeError("ResumableTrainLoader.restart(seed) must be called before iterating")
            yield next(self._iterator)


def _is_checkpoint_iteration(iteration: int, period: int, max_iter: int) -> bool:
    return (iteration + 1) % period == 0 or iteration == max_iter - 1


class ReseedHook(HookBase):
    """Starts a segment at the first iteration of a run and after every checkpoint (see the module docstring).

    Register it last, so that evaluation and writers of a checkpoint iteration run before the re-seeding.

    Args:
        seed (int): ``train.seed`` (>= 0).
        period (int): the checkpoint period (``train.checkpointer.period``).
        loader (ResumableTrainLoader | None): the training data to restart, or None to re-seed only.
    """

    def __init__(self, *, seed: int, period: int, loader: Optional[ResumableTrainLoader]) -> None:
        if seed < 0:
            raise ValueError(f"ReseedHook needs a seed >= 0, got {seed}")
        if period < 1:
            raise ValueError(f"checkpoint period must be >= 1, got {period}")
        self.seed, self.period, self.loader = seed, period, loader

    def _start_segment(self, next_iter: int) -> None:
        seed_all_rng(segment_seed(self.seed, next_iter, comm.get_rank()))
        if self.loader is not None:
            self.loader.restart(segment_seed(self.seed, next_iter))

    def before_train(self) -> None:
        self._start_segment(self.trainer.start_iter)

    def after_step(self) -> None:
        if _is_checkpoint_iteration(self.trainer.iter, self.period, self.trainer.max_iter):
            self._start_segment(self.trainer.iter + 1)


class MetricHistoryHook(HookBase):
    """Keeps the recent history of every logged scalar in the checkpoints and puts it back when a run resumes.

    detectron2's writers log losses as medians over the last 20 iterations of the trainer's ``EventStorage``, which
    a resumed run starts empty: its first logged values would be medians of fewer, different samples. With this
    hook (stateful: saved under ``trainer.hooks``), the logged curve of a resumed run continues the one of the run
    it resumes.

    Args:
        keep (int): values kept per scalar. Default: 100 (more than the writers' window of 20).
    """

    def __init__(self, *, keep: int = 100) -> None:
        self.keep = keep
        self._restored: dict[str, list] = {}

    def state_dict(self) -> dict[str, Any]:
        storage = getattr(self.trainer, "storage", None)
        if storage is None:  # saved outside training: nothing logged yet
            return {}
        return {"scalars": {name: [[float(v), int(it)] for v, it in buffer.values()[-self.keep:]]
                            for name, buffer in storage.histories().items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict.get("scalars", {}))

    def before_train(self) -> None:
        histories = self.trainer.storage.histories()  # detectron2's live name -> HistoryBuffer mapping
        for name, values in self._restored.items():
            for value, iteration in values:
                if iteration < self.trainer.start_iter:
                    histories[name].update(value, iteration)
        self._restored = {}


# -- replica check -----------------------------------------------------------------------------------------------
def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's name, dtype, shape and bytes (of the module inside a DDP wrapper)."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        data = param.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(param.shape)};".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ReplicaCheckHook(HookBase):
    """In multi-process training, compare the parameters of all processes at every checkpoint and at the last
    iteration: rank 0 logs the shared hash; different hashes raise ``RuntimeError`` in every process.

    Args:
        model (nn.Module): the trained model (DDP wrapper or not).
        period (int): the checkpoint period.
    """

    def __init__(self, model: nn.Module, *, period: int) -> None:
        self.model, self.period = model, period

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if comm.get_world_size() < 2 or not _is_checkpoint_iteration(iteration, self.period, self.trainer.max_iter):
            return
        digests = comm.all_gather(parameter_digest(self.model))
        if len(set(digests)) > 1:
            detail = ", ".join(f"rank {r}: {d[:16]}" for r, d in enumerate(digests))
            raise RuntimeError(f"parameters differ between processes after iteration {iteration} ({detail})")
        logger.info("parameters identical in all %d processes after iteration %d (sha256 %s)", len(digests),
                    iteration, digests[0])
