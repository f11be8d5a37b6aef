#!/usr/bin/env python
"""Train or evaluate a detectron2 LazyConfig (e.g. ``configs/detection/detectron2/*.py``) with the RoPE backbones.

Examples::

    # train on 8 GPUs
    python tools/train_net_d2.py --config-file configs/detection/detectron2/mask_rcnn_vitdet_b_rope_mixed_100ep.py \\
        --num-gpus 8
    # continue an interrupted run from its output directory
    python tools/train_net_d2.py --config-file <config> --num-gpus 8 --resume
    # evaluate a trained model (COCO box and mask AP)
    python tools/train_net_d2.py --config-file <config> --eval-only train.init_checkpoint=output/<run>/model_final.pth
    # a COCO-format dataset of your own, registered under a name the config then uses
    python tools/train_net_d2.py --config-file <config> --coco-dataset shapes_train data/ann/train.json data/train \\
        --coco-dataset shapes_val data/ann/val.json data/val \\
        dataloader.train.dataset.names=shapes_train dataloader.test.dataset.names=shapes_val \\
        model.roi_heads.num_classes=3 train.device=cpu

Trailing ``a.b=c`` arguments override config values (``LazyConfig.apply_overrides``). The backbone's pretrained
weights are loaded by the model itself (``model.backbone.net.pretrained``); with ``--eval-only``, or ``--resume``
from an existing checkpoint, that download is skipped because the checkpoint replaces them. Training refuses an
output directory that already holds checkpoints unless ``--resume`` (continue) or ``--overwrite`` is given.
``train.eval_period=0`` turns evaluation during training off (detectron2 would still evaluate after the last
iteration).

DINO configs (``dino_*``) need detrex and its own trainer (gradient clipping): run them with detrex's
``tools/train_net.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

try:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances
    from detectron2.engine import (
        AMPTrainer,
        SimpleTrainer,
        create_ddp_model,
        default_argument_parser,
        default_setup,
        default_writers,
        hooks,
        launch,
    )
    from detectron2.evaluation import inference_on_dataset, print_csv_format
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger
    from omegaconf import DictConfig, ListConfig
except ImportError as exc:
    sys.exit(f"tools/train_net_d2.py needs detectron2 (not on PyPI): install it from its source following "
             f"https://detectron2.readthedocs.io/en/latest/tutorials/install.html ({exc})")

import ropevit_dense.adapters.detectron2  # noqa: E402,F401 - registers the yacs build functions; the configs import it too

logger = logging.getLogger("ropevit_dense.train_net_d2")


def build_parser() -> argparse.ArgumentParser:
    """detectron2's standard launcher arguments plus ``--coco-dataset`` and ``--overwrite``."""
    parser = default_argument_parser(epilog=__doc__)
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


def _drop_pretrained(node: Any) -> list[str]:
    """Set every ``pretrained`` argument in a model config to None; returns what was dropped."""
    dropped = []
    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            if key == "pretrained" and node[key]:
                dropped.append(str(node[key]))
                node[key] = None
            else:
                dropped += _drop_pretrained(node[key])
    elif isinstance(node, ListConfig):
        for item in node:
            dropped += _drop_pretrained(item)
    return dropped


def evaluate(cfg: DictConfig, model: Any) -> Optional[dict]:
    """Run ``cfg.dataloader.evaluator`` over ``cfg.dataloader.test``; returns the metrics (None without one)."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def train(cfg: DictConfig, resume: bool) -> None:
    """The detectron2 training loop of a LazyConfig: model, optimizer, loader, hooks, checkpoints."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    data_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, data_loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate(cfg, model)) if cfg.train.eval_period > 0 else None,
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if main_process else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def _holds_checkpoints(output_dir: str) -> bool:
    folder = Path(output_dir)
    return (folder / "last_checkpoint").exists() or any(folder.glob("model_*.pth"))


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
    default_setup(cfg, args)
    setup_logger(output_dir, distributed_rank=comm.get_rank(), name="ropevit_dense")
    if args.eval_only or resuming:
        dropped = _drop_pretrained(cfg.model)
        if dropped:
            logger.info("not loading pretrained backbone weights %s: the checkpoint replaces them", dropped)
    if not args.eval_only:
        train(cfg, resume=args.resume)
        return None
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model)
    checkpoint = cfg.train.init_checkpoint
    if not checkpoint:
        raise ValueError("--eval-only needs the weights to evaluate: train.init_checkpoint=<model_final.pth>")
    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"train.init_checkpoint not found: '{checkpoint}'")
    DetectionCheckpointer(model).load(checkpoint)
    return evaluate(cfg, model)


def cli(argv: Optional[list[str]] = None) -> None:
    """Parse ``argv`` and run :func:`main` on ``--num-gpus`` processes per machine."""
    args = build_parser().parse_args(argv)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
