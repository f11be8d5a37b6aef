"""Timing and peak memory of benchmark rows.

Latency: the rows of one input size are timed round-robin in one process (median and fastest of the repeats; the
report's ratios use the fastest, see :func:`ropevit_dense.benchmark.report.markdown`), so drifts of a shared machine
affect every row alike. ``step='train'`` rows time a training step instead of a forward pass: forward,
a mean-of-outputs loss and backward, into gradient buffers allocated beforehand.

Memory: each row runs once more in its own child process, so its peak resident memory is measured cleanly: after a
warm-up step the peak is reset (``/proc/self/clear_refs``), and the reported increase is the peak during one more
step minus the resident size before it (for training steps the gradient buffers already exist, so the increase is
activations and temporaries). The child runs with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_``), so
large tensors go back to the system when freed and the peak reflects what is alive at once, not the allocator's
history. On CUDA, ``torch.cuda`` events and allocator statistics are used instead.

On CPU the timing process keeps its C heap (:func:`keep_heap`, unless ``--default-malloc``), so page faults of a
shrinking and regrowing heap do not land on one row's steps and not another's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .models import build

CHILD_MMAP_THRESHOLD = 128 * 1024


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _data_samples(model, x):
    """Image metadata that an mmdet detector's forward needs (mmseg's tensor mode needs none)."""
    if not hasattr(model, "bbox_head"):
        return None
    from mmdet.structures import DetDataSample

    shape = tuple(x.shape[-2:])
    meta = dict(img_shape=shape, batch_input_shape=shape, pad_shape=shape, ori_shape=shape, scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=meta) for _ in range(x.shape[0])]


def _outputs(model, x):
    if hasattr(model, "data_preprocessor"):  # an OpenMMLab model: the network part of its forward
        return model(x, _data_samples(model, x), mode="tensor")
    return model(x)


def _flatten(out) -> list:
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return [out] if hasattr(out, "float") else []


def step(model, x, spec: dict) -> None:
    """One forward pass (no autograd), or one training step (forward, loss, backward) for ``step == 'train'``."""
    import torch

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=spec["bf16"]):
        if spec.get("step") != "train":
            with torch.no_grad():
                _outputs(model, x)
            return
        loss = sum(t.float().mean() for t in _flatten(_outputs(model, x)))
    loss.backward()


def _prepare(model, spec: dict) -> None:
    """Gradient buffers allocated once (training rows), so steps measure activations, not gradient allocation."""
    if spec.get("step") == "train":
        for p in model.parameters():
            if p.requires_grad and p.grad is None:
                p.grad = p.detach().new_zeros(p.shape)


def peak_memory(spec: dict) -> dict:
    """Runs inside a child process: the peak memory increase of one step (after a warm-up step)."""
    import torch

    torch.set_num_threads(spec["threads"])
    model = build(spec)
    x = torch.randn(spec["batch"], 3, spec["size"], spec["size"], device=spec["device"])
    _prepare(model, spec)
    step(model, x, spec)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(model, x, spec)
        torch.cuda.synchronize()
        return {"peak_increase_mb": (torch.cuda.max_memory_allocated() - before) / 2**20}
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kb("VmRSS")
    step(model, x, spec)
    return {"peak_increase_mb": (_rss_kb("VmHWM") - before) / 1024}


def keep_heap() -> bool:
    """Keep freed memory in this process's C heap (glibc ``mallopt``: no trimming, mmap only above 32 MiB).

    With glibc's defaults, the heap shrinks and grows again between steps depending on the order of allocations of
    a few MiB, and every regrowth is paid in page faults: tens of thousands in one step of one model and none in the
    next, which moves step times of a ViT-B at 224x224 by 5-15% whatever the model computes. With the heap kept,
    every row of a group reuses its memory from step to step, as a caching allocator would. The same settings apply
    to every row, floors included; memory is measured in separate processes with their own settings.

    Returns:
        bool: whether the settings were applied (glibc only).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def latencies(specs: list[dict], repeats: int, warmup: int) -> list[list[float]]:
    """Step times of several rows of one input size, measured round-robin in this process.

    Interleaving the rows makes slow drifts of a shared machine hit every row alike, so the ratios to the floors are
    stable even when the absolute times move (see also :func:`keep_heap`).
    """
    import torch

    models = [build(spec) for spec in specs]
    x = torch.randn(specs[0]["batch"], 3, specs[0]["size"], specs[0]["size"], device=specs[0]["device"])
    cuda = x.device.type == "cuda"
    for model, spec in zip(models, specs):
        _prepare(model, spec)
        for _ in range(warmup):
            step(model, x, spec)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for i, (model, spec) in enumerate(zip(models, specs)):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step(model, x, spec)
                end.record()
                torch.cuda.synchronize()
                times[i].append(start.elapsed_time(end) / 1000)
            else:
                t0 = time.perf_counter()
                step(model, x, spec)
                times[i].append(time.perf_counter() - t0)
    return times


def run_isolated(spec: dict) -> dict:
    """:func:`peak_memory` of one row in a fresh child process (``python -m ropevit_dense.benchmark.child``)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(CHILD_MMAP_THRESHOLD)}
    proc = subprocess.run([sys.executable, "-m", "ropevit_dense.benchmark.child", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_rows(specs: list[dict], repeats: int, warmup: int, jobs: int) -> list[dict]:
    """Latency (round-robin in this process) and peak memory (``jobs`` children at a time) of one group of rows."""
    times = latencies(specs, repeats, warmup)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        memory = list(pool.map(run_isolated, specs))
    rows = []
    for spec, ts, mem in zip(specs, times, memory):
        median = statistics.median(ts)
        rows.append({**spec, "median_s": median, "min_s": min(ts), "throughput": spec["batch"] / median, **mem})
    return rows
