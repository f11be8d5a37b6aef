"""``python -m ropevit_dense.infer <config> <checkpoint> <images or folders> --out <dir>``: see :mod:`.`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Optional

from . import InferError, run


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ropevit_dense.infer",
        description="Predict with a trained mmdet, mmseg or detectron2 model: one overlay PNG per image, plus COCO "
                    "results JSON (boxes, instance masks), COCO panoptic PNGs + JSON, or label-map PNGs.")
    parser.add_argument("config", help="mmdet / mmseg config or detectron2 LazyConfig (.py)")
    parser.add_argument("checkpoint", help="trained checkpoint: path, http(s) URL or hf://owner/repo/file")
    parser.add_argument("inputs", nargs="+", help="image files and / or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--score-thr", type=float, default=0.3,
                        help="instances scoring below it are neither drawn nor written (default: 0.3)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--ann-file", default=None,
                        help="COCO json (instances or panoptic) giving image ids (by file name) and category ids "
                             "(by class name); without it, category ids come from the config's test annotation "
                             "file when it exists")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. model.test_cfg.panoptic_on=False")
    parser.add_argument("--force", action="store_true", help="replace outputs of an earlier run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(args.config, args.checkpoint, args.inputs, out=args.out, score_thr=args.score_thr,
                     batch_size=args.batch_size, device=args.device, force=args.force, ann_file=args.ann_file,
                     cfg_options=args.cfg_options, progress=not args.no_progress)
    except InferError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    for path in result.overlays:
        print(f"overlay: {path}")  # noqa: T201 - CLI output
    for kind, value in result.results.items():
        if isinstance(value, list):
            print(f"{kind}: {len(value)} files in {value[0].parent}" if value else f"{kind}: none")  # noqa: T201
        else:
            print(f"{kind}: {value}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
