#!/usr/bin/env python
"""A CPU-sized version of the paper's multi-resolution study, on semantic segmentation.

Tiny UperNets that differ only in their position encoding (APE, RoPE-Axial, RoPE-Mixed, RoPE-Mixed + APE) are
trained from scratch on a generated ADE20k-format dataset at one resolution (short side ``--train-size``, square
crops of that size), then evaluated whole-image at smaller and larger short sides. The output is a CSV, a markdown
table and a PNG of mIoU against the test resolution: the shape of the paper's Fig. 3 at toy scale.

Example (about 15 minutes on 2 CPU cores with the defaults)::

    python tools/toy_study.py --out-dir toy_study/
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "segmentation" / "mmseg" / "tiny" / "upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py"
VARIANTS = {"ape": (None, True), "axial": ("axial", False), "mixed": ("mixed", False), "mixed-ape": ("mixed", True)}


def study_config(base, *, variant: str, data_root: Path, train_size: int, iters: int, work_dir: Path, seed: int):
    """The tiny UperNet config for one position encoding, trained at ``train_size``."""
    rope, ape = VARIANTS[variant]
    cfg = copy.deepcopy(base)
    crop = (train_size, train_size)
    cfg.model.backbone.update(rope_type=rope, use_ape=ape, pretrain_img_size=train_size)
    cfg.model.data_preprocessor.size = crop
    cfg.model.test_cfg = dict(mode="whole")
    scale = (1 << 20, train_size)
    cfg.train_dataloader.dataset.pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", reduce_zero_label=True),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="RandomCrop", crop_size=crop),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"),
        dict(type="PackSegInputs"),
    ]
    cfg.test_dataloader.dataset.pipeline[1] = dict(type="Resize", scale=scale, keep_ratio=True)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.val_dataloader = cfg.test_dataloader
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters + 1)
    warmup = min(20, iters // 2)
    cfg.param_scheduler = [dict(type="PolyLR", power=1.0, eta_min=0.0, by_epoch=False, begin=warmup, end=iters)]
    if warmup:
        cfg.param_scheduler.insert(0, dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=warmup))
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=iters, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = max(1, iters // 10)
    cfg.randomness = dict(seed=seed)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f"toy_{variant}"
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="toy_study", help="output folder (data, runs, CSV, PNG)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--train-size", type=int, default=128, help="training short side and crop (pixels)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 96, 128, 160, 192, 256],
                   help="test short sides (pixels)")
    p.add_argument("--iters", type=int, default=500, help="training iterations per variant (batch 4)")
    p.add_argument("--num-train", type=int, default=32, help="generated training images")
    p.add_argument("--num-val", type=int, default=16, help="generated validation images")
    p.add_argument("--image-size", default="192x256", help="generated image size HxW")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace the results of an earlier run in --out-dir")
    args = p.parse_args(argv)
    if args.train_size < 16 or args.train_size % 16:
        p.error(f"--train-size must be a positive multiple of the patch size 16, got {args.train_size}")
    if args.iters < 1 or any(r < 16 for r in args.resolutions):
        p.error("--iters must be >= 1 and every resolution >= 16 pixels")
    try:
        h, w = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        p.error(f"--image-size must be HxW, got '{args.image_size}'")

    from mmengine.config import Config
    from mmengine.runner import Runner
    from tqdm import tqdm

    from ropevit_dense.data import make_ade20k
    from ropevit_dense.evaluation import evaluate_at_resolutions, plot_metric_vs_resolution, write_results

    out = Path(args.out_dir)
    existing = [str(out / f"toy_study.{e}") for e in ("csv", "md", "png") if (out / f"toy_study.{e}").exists()]
    if existing and not args.force:
        p.error(f"{', '.join(existing)} already exist(s); pass --force to replace, or another --out-dir")
    data = out / "data"
    if not (data / "images" / "training").is_dir():
        make_ade20k(data, num_images=args.num_train, image_size=(h, w), splits=("training",), seed=args.seed)
        make_ade20k(data, num_images=args.num_val, image_size=(h, w), splits=("validation",), seed=args.seed + 1)
    base = Config.fromfile(str(TINY))
    rows = []
    for variant in tqdm(args.variants, desc="variants", unit="model"):
        work = out / "runs" / variant
        cfg = study_config(base, variant=variant, data_root=data, train_size=args.train_size, iters=args.iters,
                           work_dir=work, seed=args.seed)
        Runner.from_cfg(cfg).train()
        results = evaluate_at_resolutions(cfg, work / f"iter_{args.iters}.pth", args.resolutions,
                                          work_dir=work / "multires", whole=True, progress=False)
        rows += [(variant, r.resolution, r.value("mIoU")) for r in results]
    table = write_results(rows, out / "toy_study.csv", metric="mIoU")
    plot_metric_vs_resolution(rows, out / "toy_study.png", metric="mIoU (%)", train_resolution=args.train_size,
                              title=f"tiny UperNet, trained at short side {args.train_size}")
    (out / "toy_study.md").write_text(table + "\n")
    print(table)  # noqa: T201 - CLI output
    print(f"wrote {out / 'toy_study.csv'}, {out / 'toy_study.md'} and {out / 'toy_study.png'}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
