"""Predictions of a trained mmdet, mmseg or detectron2 model on images: overlays to look at, files to evaluate.

``python -m ropevit_dense.infer <config> <checkpoint> <images or folders> --out <dir>`` (or :func:`run`) reads the
framework from the config (an mmengine config with ``default_scope`` mmdet or mmseg, or a detectron2 LazyConfig),
runs the framework's own inference and visualisation (mmdet ``DetInferencer``, mmseg ``MMSegInferencer``,
detectron2's predictor steps and ``Visualizer``) and writes, per task:

=================  ==============================================================================================
detection          ``vis/<stem>.png``; ``results.json`` (COCO results) + ``image_info.json``
instance masks     the same, with RLE ``segmentation`` in ``results.json``
panoptic (mmdet)   the same, plus ``panoptic/<stem>.png`` (COCO panoptic RGB ids) + ``panoptic.json``
semantic (mmseg)   ``vis/<stem>.png``; ``semantic/<stem>.png`` label maps + ``semantic.json``
=================  ==============================================================================================

Checkpoints are read by :func:`ropevit_dense.checkpoints.load_file` (``weights_only``, mmengine's allowlist) and
must fit the config's model exactly. Existing outputs are never replaced without ``force``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from .core import FRAMEWORKS, InferError, InferResult, collect_images, detect_framework

__all__ = ["FRAMEWORKS", "InferError", "InferResult", "detect_framework", "run"]

logger = logging.getLogger("ropevit_dense.infer")
PathLike = Union[str, os.PathLike]


def run(
    config: PathLike,
    checkpoint: PathLike,
    inputs: Union[PathLike, Sequence[PathLike]],
    *,
    out: PathLike,
    score_thr: float = 0.3,
    batch_size: int = 1,
    device: str = "cpu",
    force: bool = False,
    ann_file: Optional[PathLike] = None,
    cfg_options: Sequence[str] = (),
    progress: bool = True,
) -> InferResult:
    """Predict on images and write overlays and machine-readable results under ``out``.

    Args:
        config: an mmdet / mmseg config or a detectron2 LazyConfig (``.py``).
        checkpoint: the trained model: a path, an ``http(s)://`` URL or an ``hf://`` id (a local ``.pth`` for
            detectron2).
        inputs: image files and / or folders (their ``.jpg .jpeg .png .bmp .tif .tiff .webp`` files).
        out: output folder (created).
        score_thr (float): instances scoring below it are neither drawn nor written. Default: 0.3.
        batch_size (int): images per forward pass. Default: 1.
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ... Default: ``'cpu'``.
        force (bool): replace outputs of an earlier run. Default: False.
        ann_file: a COCO json (instances or panoptic) whose ``images`` give the image ids (by file name) and whose
            ``categories`` give the category ids (by class name). Without it, image ids come from numeric file
            names (else 1, 2, ...) and category ids from the config's test annotation file when it exists.
        cfg_options (Sequence[str]): config overrides ``key=value`` (mmengine ``--cfg-options`` syntax for mmdet /
            mmseg, ``LazyConfig.apply_overrides`` for detectron2), e.g. ``model.test_cfg.panoptic_on=False``.
        progress (bool): show a progress bar. Default: True.

    Returns:
        InferResult: the framework, the overlay PNGs (input order) and the result files.

    Raises:
        InferError: a missing or unreadable config, checkpoint or image, an image of an unknown format, a folder
            without images, a config of no known framework, a checkpoint of another model, existing outputs
            without ``force``, or bad arguments.
    """
    if batch_size < 1:
        raise InferError(f"batch size must be >= 1, got {batch_size}")
    if not 0.0 <= score_thr <= 1.0:
        raise InferError(f"score threshold must be in [0, 1], got {score_thr}")
    framework = detect_framework(config)
    ckpt = os.fspath(checkpoint)
    if "://" not in ckpt and not Path(ckpt).expanduser().is_file():
        raise InferError(f"checkpoint not found: '{ckpt}'")
    files = collect_images(inputs)
    out_dir = Path(out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InferError(f"output '{out_dir}' exists and is not a folder")
    ann = None if ann_file is None else os.fspath(ann_file)
    logger.info("%s model, %d image(s) -> %s", framework, len(files), out_dir)
    common = dict(out=out_dir, batch_size=batch_size, device=device, force=force, progress=progress,
                  cfg_options=list(cfg_options))
    if framework == "mmdet":
        from .mmdet_backend import run_mmdet

        return run_mmdet(os.fspath(config), ckpt, files, score_thr=score_thr, ann_file=ann, **common)
    if framework == "mmseg":
        from .mmseg_backend import run_mmseg

        return run_mmseg(os.fspath(config), ckpt, files, **common)
    from .detectron2_backend import run_detectron2

    return run_detectron2(os.fspath(config), ckpt, files, score_thr=score_thr, ann_file=ann, **common)
