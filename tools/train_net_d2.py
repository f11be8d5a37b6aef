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
    # two machines x 8 GPUs (run on each machine with its --machine-rank); on a machine without GPUs,
    # --num-gpus N runs N CPU processes over gloo
    python tools/train_net_d2.py --config-file <config> --num-gpus 8 --num-machines 2 --machine-rank 0 \\
        --dist-url tcp://<address of machine 0>:29500
    # a COCO-format dataset of your own, registered under a name the config then uses
    python tools/train_net_d2.py --config-file <config> --coco-dataset shapes_train data/ann/train.json data/train \\
        --coco-dataset shapes_val data/ann/val.json data/val \\
        dataloader.train.dataset.names=shapes_train dataloader.test.dataset.names=shapes_val \\
        model.roi_heads.num_classes=3 train.device=cpu train.amp.enabled=False

Trailing ``a.b=c`` arguments override config values (``LazyConfig.apply_overrides``). The backbone's pretrained
weights are loaded by the model itself (``model.backbone.net.pretrained``); with ``--eval-only``, or ``--resume``
from an existing checkpoint, that download is skipped because the checkpoint replaces them. Training refuses an
output directory that already holds checkpoints unless ``--resume`` (continue) or ``--overwrite`` is given.
``train.eval_period=0`` turns evaluation during training off (detectron2 would still evaluate after the last
iteration). ``train.seed=<n>`` makes a ``--resume`` continue the interrupted run exactly (same data, augmentation
and losses). Checkpoints are read without running code (``.pkl`` too), written atomically, and an unreadable
last checkpoint is skipped for the previous one; ``train.amp.enabled=True`` without a CUDA device stops with an
error. The code lives in ``ropevit_dense.adapters.d2_train``.

DINO configs (``dino_*``) need detrex and its own trainer (gradient clipping): run them with detrex's
``tools/train_net.py``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

try:
    from ropevit_dense.adapters.d2_train import build_parser as _build_parser
    from ropevit_dense.adapters.d2_train import launch, main, register_coco_datasets
except ImportError as exc:
    sys.exit(f"tools/train_net_d2.py needs detectron2 (not on PyPI): install it from its source following "
             f"https://detectron2.readthedocs.io/en/latest/tutorials/install.html ({exc})")

__all__ = ["build_parser", "cli", "main", "register_coco_datasets"]


def build_parser() -> argparse.ArgumentParser:
    """detectron2's launcher arguments (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``,
    ``--resume``, ``--eval-only``) plus ``--coco-dataset`` and ``--overwrite``."""
    return _build_parser(epilog=__doc__)


def cli(argv: Optional[list[str]] = None) -> None:
    """Parse ``argv`` and run :func:`main` on ``--num-gpus`` processes per machine."""
    launch(build_parser().parse_args(argv))


if __name__ == "__main__":
    cli()
