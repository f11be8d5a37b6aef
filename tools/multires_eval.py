#!/usr/bin/env python
"""Evaluate a trained detector or segmentor at several test resolutions (the paper's multi-resolution protocol).

Example::

    python tools/multires_eval.py configs/segmentation/mmseg/upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py \
        work_dirs/upernet/iter_160000.pth --resolutions 320 512 640 768 1024 --whole --out-dir multires/

writes ``multires.csv`` and ``multires.png`` (metric against the test short side) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ropevit_dense.evaluation import evaluate_at_resolutions, plot_metric_vs_resolution, write_results
from ropevit_dense.evaluation.multires import DEFAULT_METRICS


def _cfg_options(items: list[str]) -> dict:
    from mmengine.config import DictAction

    ns = argparse.Namespace()
    DictAction(option_strings=[], dest="o")(None, ns, items)
    return ns.o


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="mmdet or mmseg config of the trained model")
    p.add_argument("checkpoint", help="its trained checkpoint")
    p.add_argument("--resolutions", type=int, nargs="+", required=True, help="test short sides in pixels")
    p.add_argument("--whole", action="store_true",
                   help="segmentation: whole-image inference instead of the config's sliding window")
    p.add_argument("--metric", default=None, help="metric to tabulate and plot (default: coco/bbox_mAP or mIoU)")
    p.add_argument("--name", default=None, help="model name in the table (default: the config's file name)")
    p.add_argument("--train-resolution", type=int, default=None, help="draw this short side as a marker")
    p.add_argument("--out-dir", default="multires", help="output folder (CSV, PNG, runner logs)")
    p.add_argument("--force", action="store_true", help="replace multires.csv / multires.png of an earlier run")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    for what in ("config", "checkpoint"):
        if not Path(getattr(args, what)).is_file():
            p.error(f"{what} not found: {getattr(args, what)}")
    if any(r < 1 for r in args.resolutions):
        p.error(f"resolutions must be positive short sides in pixels, got {args.resolutions}")
    out = Path(args.out_dir)
    existing = [str(out / n) for n in ("multires.csv", "multires.png") if (out / n).exists()]
    if existing and not args.force:
        p.error(f"{', '.join(existing)} already exist(s); pass --force to replace, or another --out-dir")
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = evaluate_at_resolutions(args.config, args.checkpoint, args.resolutions, work_dir=out / "runs",
                                          whole=args.whole, cfg_options=_cfg_options(args.cfg_options))
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    from mmengine.config import Config

    metric = args.metric or DEFAULT_METRICS[Config.fromfile(args.config).get("default_scope")]
    name = args.name or Path(args.config).stem
    try:
        rows = [(name, r.resolution, r.value(metric)) for r in results]
    except KeyError as exc:
        p.error(str(exc.args[0]))
    table = write_results(rows, out / "multires.csv", metric=metric)
    plot_metric_vs_resolution(rows, out / "multires.png", metric=metric, train_resolution=args.train_resolution,
                              title=name)
    print(table)  # noqa: T201 - CLI output
    print(f"wrote {out / 'multires.csv'} and {out / 'multires.png'}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
