#!/usr/bin/env python
"""GPU acceptance check: SDPA kernels per attention kind, fp16 / bf16 training steps of DINO RoPE-ViT-B (1024) and
Mask2Former RoPE-Swin-T (512), inference speed and memory against the no-position floor (512, 1024, 2048),
torch.compile, and the ``cuda``-marked tests, as one markdown report (written section by section; a failing
section reports its error and the others still run). Under 8 minutes on one H200.

    python tools/gpu_check.py --out report.md             # on a machine with a GPU
    python tools/gpu_check.py --out report.md --dry-run   # the same code at tiny sizes on the CPU (CI)

Exit status: 0 when every section ran without error, 1 otherwise (the report says which), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="markdown report to write")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script, not the GPU")
    p.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    p.add_argument("--budget", type=float, default=450.0,
                   help="seconds; sections that would start after it are reported as skipped (default 450)")
    args = p.parse_args(argv)
    if args.out.exists() and not args.force:
        p.error(f"'{args.out}' exists; pass --force to replace it")
    if not args.out.parent.is_dir():
        p.error(f"output folder '{args.out.parent}' does not exist")
    if args.budget <= 0:
        p.error(f"--budget must be > 0 seconds, got {args.budget}")
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from ropevit_dense.diagnostics.gpu_check import Plan, run

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device is available; run this on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = Plan(device=args.device, dry_run=args.dry_run, root=ROOT, budget_s=args.budget)
    failed = run(plan, args.out, log=logging.getLogger("gpu_check").info)
    print(f"report: {args.out}" + (f" (sections with errors: {', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
