"""Train or evaluate a detectron2 LazyConfig with the RoPE backbones: the code behind ``tools/train_net_d2.py``.

The loop is detectron2's (``SimpleTrainer`` / ``AMPTrainer``, its hooks, writers and evaluators); this module
chooses the pieces that make it safe and resumable:

* every checkpoint is read and written by :class:`~.d2_checkpoint.SafeDetectionCheckpointer` (no code runs from a
  file; atomic writes; a resume skips an unreadable last checkpoint);
* models are wrapped by :func:`~.d2_engine.create_ddp_model` (GPUs with NCCL, or CPU processes with gloo);
* AMP without CUDA stops with a clear error (:func:`~.d2_engine.check_amp`);
* with ``train.seed`` set, a resumed run continues the data and random streams of the run it resumes
  (:class:`~.d2_engine.ReseedHook`);
* only rank 0 writes files (checkpoints, ``metrics.json``, ``log.txt``, ``config.yaml``), and with several
  processes the parameters of all of them are compared at every checkpoint (:class:`~.d2_engine.ReplicaCheckHook`).

Importing this module needs detectron2.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Optional

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import AMPTrainer, SimpleTrainer, default_argument_parser, default_setup, default_writers, hooks
from detectron2.engine import launch as d2_launch
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from omegaconf import DictConfig, ListConfig

from . import detectron2 as _adapter  # noqa: F401 - registers the yacs build functions; the configs import it too
from .d2_checkpoint import SafeDetectionCheckpointer
from .d2_engine import (
    MetricHistoryHook,
    ReplicaCheckHook,
    ReseedHook,
    ResumableTrainLoader,
    check_amp,
    create_ddp_model,
)

logger = logging.getLogger("ropevit_dense.train_net_d2")

__all__ = ["build_parser", "evaluate", "launch", "main", "register_coco_datasets", "train"]


def build_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's standard launcher arguments plus ``--coco-dataset`` and ``--overwrite``."""
    parser = default_argument_parser(epilog=epilog)
    parser.add_argument("--coco-dataset", nargs=3, action="append", default=[], metavar=("NAME", "JSON", "IMAGE_DIR"),
                        help="register a COCO-format dataset (instances json + image folder) under NAME; repeatable")
    parser.add_argument("--overwrite", action="store_true",
                        help="train into an output directory that already holds checkpoints, replacing them")
    return parser


def register_coco_datasets(specs: list[list[str]]) -> None:
    """Register ``(name, json, image_dir)`` COCO-format datasets; bad paths fail with the path in the message.

    Registering the same name again with the same files is a no-op; with other files it is an error.
    """
    for name, json_file, image_dir in specs:
        if not Path(json_file).is_file():
            raise FileNotFoundError(f"--coco-dataset {name}: annotation file not found: '{json_file}'")
        if not Path(image_dir).is_dir():
            raise FileNotFoundError(f"--coco-dataset {name}: image folder not found: '{image_dir}'")
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            same = (getattr(meta, "json_file", None), getattr(meta, "image_root", None)) == (json_file, image_dir)
            if same:
                continue
            raise ValueError(f"--coco-dataset {name}: a dataset of that name is already registered with other files")
        register_coco_instances(name, {}, json_file, image_dir)


def drop_pretrained(node: Any) -> list[str]:
    """Set every ``pretrained`` argument in a LazyConfig model to None (a whole-detector checkpoint then holds all
    weights); returns what was dropped."""
    dropped = []
    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            if key == "pretrained" and node[key]:
                dropped.append(str(node[key]))
                node[key] = None
            else:
                dropped += drop_pretrained(node[key])
    elif isinstance(node, ListConfig):
        for item in node:
            dropped += drop_pretrained(item)
    return dropped


def evaluate(cfg: DictConfig, model: Any) -> Optional[dict]:
    """Run ``cfg.dataloader.evaluator`` over ``cfg.dataloader.test``; returns the metrics (None without one)."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def _train_loader(cfg: DictConfig, seed: int) -> Any:
    """The training data: restartable from a seed when ``train.seed`` is set and the loader allows it."""
    if seed < 0:
        return instantiate(cfg.dataloader.train)
    try:
        return ResumableTrainLoader(cfg.dataloader.train)
    except TypeError as exc:
        logger.warning("train.seed is set, but a resumed run will not see the data of the run it resumes: %s", exc)
        return instantiate(cfg.dataloader.train)


def train(cfg: DictConfig, resume: bool) -> None:
    """The detectron2 training loop of a LazyConfig: model, optimizer, loader, hooks, checkpoints."""
    check_amp(cfg)
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    seed = int(cfg.train.get("seed", -1))
    data_loader = _train_loader(cfg, seed)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, data_loader, optimizer)
    checkpointer = SafeDetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main_process = comm.is_main_process()
    period = cfg.train.checkpointer.period
    reseed = None
    if seed >= 0:
        reseed = ReseedHook(seed=seed, period=period,
                            loader=data_loader if isinstance(data_loader, ResumableTrainLoader) else None)
    trainer.register_hooks([
        hooks.IterationTimer(),
        MetricHistoryHook(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        ReplicaCheckHook(model, period=period) if comm.get_world_size() > 1 else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate(cfg, model)) if cfg.train.eval_period > 0 else None,
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if main_process else None,
        reseed,  # last: after the checkpoint, evaluation and writers of an iteration
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def _holds_checkpoints(output_dir: str) -> bool:
    folder = Path(output_dir)
    return (folder / "last_checkpoint").exists() or any(folder.glob("model_*.pth"))


def _setup(cfg: DictConfig, args: argparse.Namespace) -> None:
    """detectron2's ``default_setup`` (loggers, environment report, ``config.yaml``, seeds), with files written by
    rank 0 only: the other processes log nowhere instead of to ``log.txt.rank<N>``."""
    output_dir = cfg.train.output_dir
    if not comm.is_main_process():
        cfg.train.output_dir = None
    try:
        default_setup(cfg, args)
    finally:
        cfg.train.output_dir = output_dir
    setup_logger(output_dir if comm.is_main_process() else None, distributed_rank=comm.get_rank(),
                 name="ropevit_dense")


def main(args: argparse.Namespace) -> Optional[dict]:
    """Load the config, apply the overrides, then train or evaluate. Returns the evaluation metrics, if any."""
    if not Path(args.config_file).is_file():
        raise FileNotFoundError(f"config file not found: '{args.config_file}'")
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    register_coco_datasets(args.coco_dataset)
    output_dir = cfg.train.output_dir
    resuming = args.resume and _holds_checkpoints(output_dir)
    if not args.eval_only and not args.resume and not args.overwrite and _holds_checkpoints(output_dir):
        raise FileExistsError(f"output directory '{output_dir}' already holds checkpoints: pass --resume to continue "
                              "that run, --overwrite to replace it, or set train.output_dir=<another folder>")
    if not args.eval_only:
        check_amp(cfg)
    _setup(cfg, args)
    if args.eval_only or resuming:
        dropped = drop_pretrained(cfg.model)
        if dropped:
            logger.info("not loading pretrained backbone weights %s: the checkpoint replaces them", dropped)
    if not args.eval_only:
        train(cfg, resume=args.resume)
        return None
    checkpoint = cfg.train.init_checkpoint
    if not checkpoint:
        raise ValueError("--eval-only needs the weights to evaluate: train.init_checkpoint=<model_final.pth>")
    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"train.init_checkpoint not found: '{checkpoint}'")
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model)
    SafeDetectionCheckpointer(model).load(checkpoint)
    return evaluate(cfg, model)


def launch(args: argparse.Namespace) -> None:
    """Run :func:`main` in ``args.num_gpus`` processes per machine (detectron2's ``launch``: NCCL with GPUs, gloo
    without), on ``args.num_machines`` machines of which this is ``args.machine_rank``, meeting at
    ``args.dist_url``."""
    d2_launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
              dist_url=args.dist_url, args=(args,))
