#!/usr/bin/env python
"""Latency and peak-memory benchmark of the backbones, against the no-position-encoding floor.

Latency: the rows of one input size are timed round-robin in one process (median of ``--repeats``), so drifts of
a shared machine affect every row alike. Memory: each row runs once more in its own subprocess, so its peak
resident memory is measured cleanly: after a warm-up pass the peak is reset (``/proc/self/clear_refs``), and the
reported increase is the peak during one more forward pass minus the resident size before it.
The child runs with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_``), so large tensors go back to
the system when freed and the peak reflects what is alive at once, not the allocator's history (the dynamic
threshold otherwise keeps freed blocks resident and makes the peak depend on allocation order).

Examples::

    python tools/benchmark.py                                   # ViT-B/16, modes none/axial/mixed, 224/512/1024
    python tools/benchmark.py --sizes 1024 --layouts vitdet     # ViTDet-B layout (window 14, global 2,5,8,11)
    python tools/benchmark.py --arch swin-t --sizes 224,512 --md bench.md --csv bench.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = {  # name -> constructor arguments
    "none": dict(rope_type=None),
    "ape": dict(rope_type=None, use_ape=True),
    "axial": dict(rope_type="axial"),
    "mixed": dict(rope_type="mixed"),
    "mixed-ape": dict(rope_type="mixed", use_ape=True),
    "rpb": dict(rope_type=None, use_rpb=True),
    "mixed-rpb": dict(rope_type="mixed", use_rpb=True),
}
ARCHS = {
    "vit-s": ("RoPEViT", dict(embed_dim=384, depth=12, num_heads=6)),
    "vit-b": ("RoPEViT", dict(embed_dim=768, depth=12, num_heads=12)),
    "vit-l": ("RoPEViT", dict(embed_dim=1024, depth=24, num_heads=16)),
    "swin-t": ("RoPESwin", dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))),
    "swin-b": ("RoPESwin", dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))),
}
LAYOUTS = {"global": {}, "vitdet": dict(window_size=14, global_block_indexes=(2, 5, 8, 11))}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def build(spec: dict):
    """The backbone of one benchmark row, in eval mode on its device."""
    import torch

    import ropevit_dense.backbones as backbones

    cls_name, kwargs = ARCHS[spec["arch"]]
    kwargs = {**kwargs, **MODES[spec["mode"]]}
    if cls_name == "RoPEViT":
        if kwargs.pop("use_rpb", False):
            raise ValueError(f"position mode '{spec['mode']}' (relative position bias) is for Swin backbones")
        kwargs.update(LAYOUTS[spec["layout"]])
        kwargs["use_cls_token"] = False
    else:
        if spec["layout"] != "global":
            raise ValueError("layouts apply to ViT backbones only")
        if kwargs.pop("use_ape", False):
            raise ValueError(f"position mode '{spec['mode']}' (absolute embedding) is for ViT backbones")
    torch.manual_seed(0)
    return getattr(backbones, cls_name)(**kwargs).eval().to(spec["device"])


def _forward(model, x, bf16: bool):
    import torch

    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        return model(x)


def peak_memory(spec: dict) -> dict:
    """Runs inside a child process: the peak memory increase of one forward pass (after a warm-up pass)."""
    import torch

    torch.set_num_threads(spec["threads"])
    model = build(spec)
    x = torch.randn(1, 3, spec["size"], spec["size"], device=spec["device"])
    _forward(model, x, spec["bf16"])
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        _forward(model, x, spec["bf16"])
        torch.cuda.synchronize()
        return {"peak_increase_mb": (torch.cuda.max_memory_allocated() - before) / 2**20}
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kb("VmRSS")
    _forward(model, x, spec["bf16"])
    return {"peak_increase_mb": (_rss_kb("VmHWM") - before) / 1024}


def latencies(specs: list[dict], repeats: int, warmup: int) -> list[list[float]]:
    """Forward times of several rows of one input size, measured round-robin in this process.

    Interleaving the rows makes slow drifts of a shared machine hit every row alike, so the ratios to the floor
    are stable even when the absolute times move.
    """
    import torch

    models = [build(spec) for spec in specs]
    x = torch.randn(1, 3, specs[0]["size"], specs[0]["size"], device=specs[0]["device"])
    cuda = x.device.type == "cuda"
    for model in models:
        for _ in range(warmup):
            _forward(model, x, specs[0]["bf16"])
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for i, model in enumerate(models):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                _forward(model, x, specs[0]["bf16"])
                end.record()
                torch.cuda.synchronize()
                times[i].append(start.elapsed_time(end) / 1000)
            else:
                t0 = time.perf_counter()
                _forward(model, x, specs[0]["bf16"])
                times[i].append(time.perf_counter() - t0)
    return times


def run_isolated(spec: dict) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    """One row per run; the ratio columns compare with the 'none' mode of the same arch / layout / size."""
    floor = {(r["arch"], r["layout"], r["size"]): r for r in rows if r["mode"] == "none"}
    lines = ["| backbone | layout | position | input | median latency (s) | x floor | peak mem. increase (MB) "
             "| x floor |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = floor.get((r["arch"], r["layout"], r["size"]))
        t_ratio = f"{r['median_s'] / f['median_s']:.3f}" if f else "-"
        m_ratio = f"{r['peak_increase_mb'] / f['peak_increase_mb']:.2f}" if f and f["peak_increase_mb"] > 0 else "-"
        lines.append(f"| {r['arch']} | {r['layout']} | {r['mode']} | {r['size']}x{r['size']} | {r['median_s']:.3f} "
                     f"| {t_ratio} | {r['peak_increase_mb']:.0f} | {m_ratio} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vit-b", choices=sorted(ARCHS))
    p.add_argument("--modes", default="none,axial,mixed", help=f"comma list out of {','.join(MODES)}")
    p.add_argument("--layouts", default="global", help="comma list out of global,vitdet (ViT only)")
    p.add_argument("--sizes", default="224,512,1024", help="comma list of square input sides")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument("--md", type=Path, help="write the markdown table here")
    p.add_argument("--csv", type=Path, help="write the rows as CSV here")
    p.add_argument("--child", help=argparse.SUPPRESS)
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
    if any(s < 32 for s in args.size_list) or args.repeats < 1:
        p.error("sizes must be >= 32 and --repeats >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(peak_memory(json.loads(args.child))))
        return 0
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    rows = []
    groups = [(lay, s) for lay in args.layouts.split(",") for s in args.size_list]
    for lay, size in tqdm(groups, desc="benchmark", unit="size"):
        specs = [dict(arch=args.arch, mode=m, layout=lay, size=size, threads=args.threads, device=args.device,
                      bf16=args.bf16) for m in args.modes.split(",")]
        times = latencies(specs, args.repeats, args.warmup)
        for spec, ts in zip(specs, times):
            rows.append({**spec, "median_s": statistics.median(ts), "min_s": min(ts), **run_isolated(spec)})
    table = markdown(rows)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
