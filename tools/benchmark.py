#!/usr/bin/env python
"""Latency and peak-memory benchmark of the backbones against two floors: the same backbone without position
encoding (``none``) and timm's plain ViT / Swin (``timm``), measured in the same interleaved run.

The measuring logic is :mod:`ropevit_dense.benchmark` (its docstrings say how latency and memory are taken); this
is its command line. Rows of one input size are timed round-robin together; each row's peak memory is taken in its
own child process. ``--train`` times training steps (forward + backward) instead of forward passes.

Whole models: ``--config`` (repeatable) adds rows for the model of an mmdet or mmseg config (e.g. a DINO detector or
an UperNet segmentor; its ``custom_imports`` and ``default_scope`` are honoured), timed as one network forward
(``mode='tensor'``: backbone, neck and heads, no pre- or post-processing) with random weights, next to its floor:
the same model with ``rope_type=None`` and no APE / RPB (no position encoding at all).

Examples::

    python tools/benchmark.py                                   # ViT-B/16: timm, none, axial, mixed at 224/512/1024
    python tools/benchmark.py --sizes 1024 --layouts vitdet --modes none,axial,mixed   # ViTDet-B layout
    python tools/benchmark.py --sizes 224,512 --train           # training steps
    python tools/benchmark.py --arch swin-t --sizes 224,512 --md bench.md --csv bench.csv --plot bench.png
    python tools/benchmark.py --sizes 512,1024 --layouts vitdet --modes none,mixed --compile   # + compiled rows
    python tools/benchmark.py --arch dinov3-b --modes none,axial    # DINOv3-B: its RoPE against the floor
    python tools/benchmark.py --arch eva02-b --modes none,ape,axial  # EVA-02-B: APE, APE + RoPE, floor
    python tools/benchmark.py --sizes 160,320 --batch 2 \\
        --config configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ropevit_dense.benchmark import (
    LAYOUTS,
    MODES,
    keep_heap,
    load_config,
    markdown,
    measure_rows,
    plot,
    position_label,
    write_csv,
)
from ropevit_dense.benchmark.models import ARCHS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), help="backbone rows (default vit-b when no --config is given)")
    p.add_argument("--modes", default="timm,none,axial,mixed",
                   help=f"comma list out of {','.join(MODES)} ('timm' rows are skipped for layouts timm lacks)")
    p.add_argument("--layouts", default="global", help="comma list out of global,vitdet (ViT only)")
    p.add_argument("--config", action="append", default=[], metavar="PATH",
                   help="whole-model rows: an mmdet / mmseg config (repeatable), timed against its floor")
    p.add_argument("--sizes", default="224,512,1024", help="comma list of square input sides")
    p.add_argument("--batch", type=int, default=1, help="images per step (throughput = batch / latency)")
    p.add_argument("--train", action="store_true", help="time training steps (forward + backward), not forwards")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2, help="memory-measuring subprocesses run at once (default 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument("--compile", action="store_true",
                   help="also time every row under torch.compile (inductor, static shapes), next to its eager row; "
                        "the table gets a speed-up column (compilation happens in the warm-up)")
    p.add_argument("--md", type=Path, help="write the markdown table here")
    p.add_argument("--csv", type=Path, help="write the rows as CSV here")
    p.add_argument("--plot", type=Path, help="write a PNG of latency and memory against input size here")
    p.add_argument("--force", action="store_true", help="replace existing --md / --csv / --plot files")
    p.add_argument("--default-malloc", action="store_true",
                   help="time CPU rows with glibc's default heap trimming (by default the timing process keeps its "
                        "heap, so page faults of heap regrowth do not land on some rows' steps and not others')")
    args = p.parse_args(argv)
    for name in args.modes.split(","):
        if name not in MODES:
            p.error(f"unknown position mode '{name}'; choose from {', '.join(MODES)}")
    for name in args.layouts.split(","):
        if name not in LAYOUTS:
            p.error(f"unknown layout '{name}'; choose from {', '.join(LAYOUTS)}")
    try:
        args.size_list = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes must be a comma list of integers, got '{args.sizes}'")
    if any(s < 32 for s in args.size_list) or args.repeats < 1 or args.batch < 1 or args.jobs < 1:
        p.error("sizes must be >= 32, --repeats >= 1, --batch >= 1 and --jobs >= 1")
    if args.compile and args.warmup < 1:
        p.error("--compile needs --warmup >= 1: the first call compiles")
    for path in args.config:
        if not Path(path).is_file() or Path(path).suffix != ".py":
            p.error(f"--config '{path}' is not an existing .py config file")
    if args.arch is None and not args.config:
        args.arch = "vit-b"
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        p.error(f"--plot must be a .png file, got '{args.plot}'")
    for out in (args.md, args.csv, args.plot):
        if out is not None and out.exists() and not args.force:
            p.error(f"'{out}' exists; pass --force to replace it")
        if out is not None and not out.parent.is_dir():
            p.error(f"output folder '{out.parent}' does not exist")
    return args


def _has_timm_floor(arch: str, layout: str) -> bool:
    cls_name, kwargs = ARCHS[arch]
    return "family" not in kwargs and (cls_name == "RoPESwin" or layout == "global")


def row_groups(args: argparse.Namespace) -> list[list[dict]]:
    """The benchmark rows, in groups timed round-robin together (one input size of one backbone / config each)."""
    common = dict(threads=args.threads, device=args.device, bf16=args.bf16, batch=args.batch, compile=False,
                  step="train" if args.train else "forward")
    groups = []
    if args.arch:
        for lay in args.layouts.split(","):
            modes = [m for m in args.modes.split(",") if m != "timm" or _has_timm_floor(args.arch, lay)]
            for size in args.size_list:
                groups.append([dict(arch=args.arch, mode=m, layout=lay, size=size, config=None, **common)
                               for m in modes])
    for path in args.config:
        mode = position_label(load_config(path).model.backbone)
        modes = ["none"] if mode == "none" else ["none", mode]
        for size in args.size_list:
            groups.append([dict(arch=Path(path).stem, mode=m, layout="model", size=size,
                                config=str(Path(path).resolve()), **common) for m in modes])
    if args.compile:  # each compiled row is timed round-robin with its eager twin
        groups = [specs + [dict(spec, compile=True) for spec in specs] for specs in groups]
    return groups


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    if args.device == "cpu" and not args.default_malloc and not keep_heap():
        print("note: could not change the C allocator's settings (not glibc); timings include heap regrowth",
              file=sys.stderr)
    rows = []
    for specs in tqdm(row_groups(args), desc="benchmark", unit="group"):
        try:
            rows += measure_rows(specs, args.repeats, args.warmup, args.jobs)
        except Exception as exc:  # noqa: BLE001 - name the row that failed, whatever the failure
            print(f"error: {specs[0]['arch']} ({specs[0]['layout']}) at {specs[0]['size']}x{specs[0]['size']} failed: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    table = markdown(rows)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    if args.csv:
        write_csv(rows, args.csv)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
