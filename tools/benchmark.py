#!/usr/bin/env python
"""Latency and peak-memory benchmark of the backbones, against the no-position-encoding floor.

Latency: the rows of one input size are timed round-robin in one process (median of ``--repeats``), so drifts of
a shared machine affect every row alike. Memory: each row runs once more in its own subprocess, so its peak
resident memory is measured cleanly: after a warm-up pass the peak is reset (``/proc/self/clear_refs``), and the
reported increase is the peak during one more forward pass minus the resident size before it.
The child runs with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_``), so large tensors go back to
the system when freed and the peak reflects what is alive at once, not the allocator's history (the dynamic
threshold otherwise keeps freed blocks resident and makes the peak depend on allocation order). The subprocesses
of one group run ``--jobs`` at a time, after its timing (each measures only its own process).

Throughput is ``--batch`` images divided by the median latency of one batch.

Whole models: ``--config`` (repeatable) adds rows for the model of an mmdet or mmseg config (e.g. a DINO detector or
an UperNet segmentor; its ``custom_imports`` and ``default_scope`` are honoured), timed as one network forward
(``mode='tensor'``: backbone, neck and heads, no pre- or post-processing) with random weights, next to its floor:
the same model with ``rope_type=None`` and no APE / RPB (no position encoding at all).

Examples::

    python tools/benchmark.py                                   # ViT-B/16, modes none/axial/mixed, 224/512/1024
    python tools/benchmark.py --sizes 1024 --layouts vitdet     # ViTDet-B layout (window 14, global 2,5,8,11)
    python tools/benchmark.py --arch swin-t --sizes 224,512 --md bench.md --csv bench.csv --plot bench.png
    python tools/benchmark.py --sizes 512,1024 --layouts vitdet --compile   # eager and compiled, speed-up column
    python tools/benchmark.py --arch dinov3-b --modes none,axial    # DINOv3-B: its RoPE against the floor
    python tools/benchmark.py --arch eva02-b --modes none,ape,axial  # EVA-02-B: APE, APE + RoPE, floor
    python tools/benchmark.py --sizes 160,320 --batch 2 \
        --config configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODES = {  # name -> constructor arguments
    "none": dict(rope_type=None, use_ape=False),  # the floor: no position encoding (also for EVA-02, whose APE is on)
    "ape": dict(rope_type=None, use_ape=True),
    "axial": dict(rope_type="axial"),
    "mixed": dict(rope_type="mixed"),
    "mixed-ape": dict(rope_type="mixed", use_ape=True),
    "rpb": dict(rope_type=None, use_rpb=True),
    "mixed-rpb": dict(rope_type="mixed", use_rpb=True),
    "spherical": dict(rope_type="spherical"),
    "liere": dict(rope_type="liere"),
    "comrope-ap": dict(rope_type="comrope-ap"),
    "comrope-ld": dict(rope_type="comrope-ld"),
}
ARCHS = {
    "vit-s": ("RoPEViT", dict(embed_dim=384, depth=12, num_heads=6)),
    "vit-b": ("RoPEViT", dict(embed_dim=768, depth=12, num_heads=12)),
    "vit-l": ("RoPEViT", dict(embed_dim=1024, depth=24, num_heads=16)),
    # other RoPE ViT families (their 'axial' mode is their own pretrained RoPE; EVA-02 keeps its APE unless 'none')
    "dinov3-b": ("RoPEViT", dict(family="dinov3", embed_dim=768, depth=12, num_heads=12)),
    "eva02-b": ("RoPEViT", dict(family="eva02", embed_dim=768, depth=12, num_heads=12)),
    "swin-t": ("RoPESwin", dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))),
    "swin-b": ("RoPESwin", dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))),
}
LAYOUTS = {"global": {}, "vitdet": dict(window_size=14, global_block_indexes=(2, 5, 8, 11))}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _position_label(backbone: dict) -> str:
    """Position mode of a config's backbone, in the names of ``MODES`` (e.g. ``mixed-ape``)."""
    family = backbone.get("family", "rope-vit")  # other families' default is their own RoPE, e.g. "dinov3"
    rope = backbone.get("rope_type", "mixed" if family == "rope-vit" else family)
    rope = family if rope == "family" else rope
    parts = ([rope] if rope else []) + [name for key, name in (("use_ape", "ape"), ("use_rpb", "rpb"))
                                        if backbone.get(key)]
    return "-".join(parts) or "none"


def load_config(path: str, floor: bool = False):
    """An mmdet / mmseg config with its ``custom_imports`` done and its default scope set.

    Args:
        path: the config file.
        floor: strip the backbone's position encoding (``rope_type=None``, no APE / RPB).

    Returns:
        Config: the loaded config (``cfg.model`` is what gets built).
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    if not Path(path).is_file():
        raise FileNotFoundError(f"config not found: '{path}'")
    cfg = Config.fromfile(path)
    if cfg.get("custom_imports"):
        import_modules_from_strings(**cfg["custom_imports"])
    scope = cfg.get("default_scope")
    if scope not in ("mmdet", "mmseg"):
        raise ValueError(f"config '{path}' has default_scope={scope!r}; expected an mmdet or mmseg config")
    init_default_scope(scope)
    backbone = cfg.model.get("backbone")
    if backbone is None or backbone.get("type") not in ("RoPEViT", "RoPESwin"):
        raise ValueError(f"config '{path}': the model's backbone is "
                         f"{None if backbone is None else backbone.get('type')!r}, not RoPEViT / RoPESwin")
    backbone["init_cfg"] = None  # random weights: no download, same cost
    if floor:
        for key in [k for k in backbone if k.startswith("rope_") and k != "rope_position"]:
            backbone.pop(key)
        backbone["rope_type"] = None
        if backbone["type"] == "RoPEViT":
            backbone["use_ape"] = False  # explicitly: a family may have an APE by default (EVA-02)
        else:
            backbone.pop("use_rpb", None)
    return cfg


def build(spec: dict):
    """The backbone (or whole model) of one benchmark row, in eval mode on its device."""
    import torch

    import ropevit_dense.backbones as backbones

    if spec.get("config"):
        from mmengine.registry import MODELS

        cfg = load_config(spec["config"], floor=spec["mode"] == "none")
        torch.manual_seed(0)
        return _maybe_compile(MODELS.build(cfg.model).eval().to(spec["device"]), spec)
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
    return _maybe_compile(getattr(backbones, cls_name)(**kwargs).eval().to(spec["device"]), spec)


def _maybe_compile(model, spec: dict):
    """``--compile`` rows: the model under ``torch.compile`` (inductor, static shapes; compiled in the warm-up)."""
    if not spec.get("compile"):
        return model
    import torch

    return torch.compile(model, backend="inductor", dynamic=False)


def _forward(model, x, bf16: bool):
    import torch

    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        if hasattr(model, "data_preprocessor"):  # an OpenMMLab model: the network part of its forward
            return model(x, _data_samples(model, x), mode="tensor")
        return model(x)


def _data_samples(model, x):
    """Image metadata that an mmdet detector's forward needs (mmseg's tensor mode needs none)."""
    if not hasattr(model, "bbox_head"):
        return None
    from mmdet.structures import DetDataSample

    shape = tuple(x.shape[-2:])
    meta = dict(img_shape=shape, batch_input_shape=shape, pad_shape=shape, ori_shape=shape, scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=meta) for _ in range(x.shape[0])]


def peak_memory(spec: dict) -> dict:
    """Runs inside a child process: the peak memory increase of one forward pass (after a warm-up pass)."""
    import torch

    torch.set_num_threads(spec["threads"])
    model = build(spec)
    x = torch.randn(spec["batch"], 3, spec["size"], spec["size"], device=spec["device"])
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
    x = torch.randn(specs[0]["batch"], 3, specs[0]["size"], specs[0]["size"], device=specs[0]["device"])
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
    def key(r: dict) -> tuple:
        return r["arch"], r["layout"], r["size"], bool(r.get("compile"))

    floor = {key(r): r for r in rows if r["mode"] == "none"}
    eager = {(*key(r)[:3], r["mode"]): r for r in rows if not r.get("compile")}
    compiled = any(r.get("compile") for r in rows)  # --compile: a speed-up column against the eager row
    lines = ["| backbone | layout | position | input | median latency (s) | x floor | peak mem. increase (MB) "
             "| x floor | throughput (img/s) |" + (" speed-up over eager |" if compiled else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if compiled else "")]
    for r in rows:
        f = floor.get(key(r))
        t_ratio = f"{r['median_s'] / f['median_s']:.3f}" if f else "-"
        m_ratio = f"{r['peak_increase_mb'] / f['peak_increase_mb']:.2f}" if f and f["peak_increase_mb"] > 0 else "-"
        mode = f"{r['mode']} (compiled)" if r.get("compile") else r["mode"]
        line = (f"| {r['arch']} | {r['layout']} | {mode} | {r['size']}x{r['size']} | {r['median_s']:.3f} "
                f"| {t_ratio} | {r['peak_increase_mb']:.0f} | {m_ratio} | {r['throughput']:.2f} |")
        if compiled:
            e = eager.get((*key(r)[:3], r["mode"])) if r.get("compile") else None
            line += f" {e['median_s'] / r['median_s']:.2f} |" if e else " - |"
        lines.append(line)
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Latency and peak memory against input size: one colour per backbone / config and layout, dashed for the
    no-position-encoding floor, one marker per position mode (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arch"], r["layout"], r["mode"] + (" (compiled)" if r.get("compile") else "")),
                          []).append(r)
    models = list(dict.fromkeys((a, lay) for a, lay, _ in groups))
    modes = list(dict.fromkeys(m for _, _, m in groups))
    ncol = 2 if len(models) > 1 else 4
    legend_rows = -(-len(groups) // ncol)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2 + 0.2 * legend_rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>pX*"
    for (arch, layout, mode), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["size"])
        model = models.index((arch, layout))
        color = colors[(model if len(models) > 1 else modes.index(mode)) % len(colors)]
        label = f"{arch} ({layout}) {mode}" if len(models) > 1 else mode
        style = dict(color=color, marker=markers[modes.index(mode) % len(markers)], markersize=4,
                     linestyle="--" if mode == "none" else "-", label=label)
        axes[0].plot([r["size"] for r in rs], [r["median_s"] * 1000 for r in rs], **style)
        axes[1].plot([r["size"] for r in rs], [r["peak_increase_mb"] for r in rs], **style)
    batch = rows[0]["batch"]
    axes[0].set(xlabel="input side (pixels)", ylabel=f"median latency, batch {batch} (ms)")
    axes[1].set(xlabel="input side (pixels)", ylabel="peak memory increase (MB)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({r["size"] for r in rows}))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    device = rows[0]["device"] + (", bf16" if rows[0]["bf16"] else "")
    fig.suptitle(f"{device}; dashed: no position encoding (floor)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07 * legend_rows / (1 + 0.06 * legend_rows) + 0.02, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), help="backbone rows (default vit-b when no --config is given)")
    p.add_argument("--modes", default="none,axial,mixed", help=f"comma list out of {','.join(MODES)}")
    p.add_argument("--layouts", default="global", help="comma list out of global,vitdet (ViT only)")
    p.add_argument("--config", action="append", default=[], metavar="PATH",
                   help="whole-model rows: an mmdet / mmseg config (repeatable), timed against its floor")
    p.add_argument("--sizes", default="224,512,1024", help="comma list of square input sides")
    p.add_argument("--batch", type=int, default=1, help="images per forward (throughput = batch / latency)")
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
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
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


def row_groups(args: argparse.Namespace) -> list[list[dict]]:
    """The benchmark rows, in groups timed round-robin together (one input size of one backbone / config each)."""
    common = dict(threads=args.threads, device=args.device, bf16=args.bf16, batch=args.batch, compile=False)
    groups = []
    if args.arch:
        for lay in args.layouts.split(","):
            for size in args.size_list:
                groups.append([dict(arch=args.arch, mode=m, layout=lay, size=size, config=None, **common)
                               for m in args.modes.split(",")])
    for path in args.config:
        mode = _position_label(load_config(path).model.backbone)
        modes = ["none"] if mode == "none" else ["none", mode]
        for size in args.size_list:
            groups.append([dict(arch=Path(path).stem, mode=m, layout="model", size=size,
                                config=str(Path(path).resolve()), **common) for m in modes])
    if args.compile:  # each compiled row is timed round-robin with its eager twin
        groups = [specs + [dict(spec, compile=True) for spec in specs] for specs in groups]
    return groups


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(peak_memory(json.loads(args.child))))
        return 0
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    rows = []
    for specs in tqdm(row_groups(args), desc="benchmark", unit="group"):
        try:
            times = latencies(specs, args.repeats, args.warmup)
        except Exception as exc:  # noqa: BLE001 - name the row that failed, whatever the failure
            print(f"error: {specs[0]['arch']} ({specs[0]['layout']}) at {specs[0]['size']}x{specs[0]['size']} failed: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            memory = list(pool.map(run_isolated, specs))
        for spec, ts, mem in zip(specs, times, memory):
            median = statistics.median(ts)
            rows.append({**spec, "median_s": median, "min_s": min(ts), "throughput": spec["batch"] / median, **mem})
    table = markdown(rows)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
