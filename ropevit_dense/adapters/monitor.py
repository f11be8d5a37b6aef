"""``RoPEResourceMonitorHook``: resident memory and wall time of every training iteration, for soak tests.

A long run should stay flat: no growth of resident memory from tables or masks cached per input size (RoPE
angle tables, window masks) and no slow-down. The hook appends one JSON line per logged iteration to a file in
the work dir, with the batch's largest input height and width, so growth can be told apart from larger inputs::

    custom_hooks = [dict(type='RoPEResourceMonitorHook', interval=1)]   # <work_dir>/resources.jsonl
    {"iter": 1, "time": 0.52, "rss_mb": 812.4, "height": 160, "width": 267}

:func:`flatness` summarises such a record (medians of the first and the last quarter after warm-up; the growth
of a least-squares line through the memory figures).
"""

from __future__ import annotations

import ctypes
import json
import os
import os.path as osp
import resource
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

_LIBC: Any = None


def _malloc_trim() -> None:
    """Hand the C heap's free pages back to the system (glibc), so that RSS counts live memory only.

    Without it RSS follows the heap's high-water mark: the first time a larger batch comes along it rises and
    stays, which looks like growth in a multi-scale run that merely met its largest inputs late.
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def resident_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RoPEResourceMonitorHook(Hook):
    """Append ``{"iter", "time", "rss_mb", "height", "width"}`` per ``interval`` training iterations to ``out_file``.

    Args:
        out_file: JSON-lines file; relative paths are under the run's work dir.
        interval: record every ``interval``-th iteration (the time is that iteration's own).
        trim: return the C heap's free pages to the system before reading RSS (glibc ``malloc_trim``; costs a few
            milliseconds after the timed part), so that the figure is live memory, not the heap's high-water mark.
    """

    priority = "VERY_LOW"

    def __init__(self, *, out_file: str = "resources.jsonl", interval: int = 1, trim: bool = True) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.out_file, self.interval, self.trim = out_file, int(interval), bool(trim)
        self._start: Optional[float] = None
        self._path: Optional[str] = None

    def before_train(self, runner) -> None:
        self._path = self.out_file if osp.isabs(self.out_file) else osp.join(runner.work_dir, self.out_file)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._start is None or not is_main_process() or (runner.iter + 1) % self.interval:
            return
        elapsed = time.perf_counter() - self._start
        if self.trim:
            _malloc_trim()
        inputs = data_batch.get("inputs", []) if isinstance(data_batch, dict) else []
        shapes = [tuple(x.shape[-2:]) for x in inputs if hasattr(x, "shape")]
        record = {"iter": runner.iter + 1, "time": round(elapsed, 5), "rss_mb": round(resident_mb(), 2),
                  "height": max((s[0] for s in shapes), default=0), "width": max((s[1] for s in shapes), default=0)}
        with open(self._path, "a") as f:
            f.write(json.dumps(record) + "\n")


def flatness(records: Sequence[dict], *, warmup: float = 0.1, min_warmup: int = 200) -> dict:
    """Memory and time trends of a :class:`RoPEResourceMonitorHook` record, after dropping the warm-up.

    The warm-up (``max(min_warmup, warmup * len(records))`` iterations) covers the allocator's pools filling up
    and the first sight of each input scale; resident memory of the tiny DINO rises for up to 200 iterations
    (1.10 GiB at the first, 1.46-1.50 GiB from about the 50th to the 200th), then stays within +-50 MiB.

    Returns:
        dict: ``rss_start_mb`` / ``rss_end_mb`` (medians of the first and last quarter after warm-up),
        ``rss_fit_growth_mb`` (growth over the measured iterations on a least-squares line), ``time_start`` /
        ``time_end`` (median seconds per iteration of the same quarters), ``measured`` (iterations after warm-up),
        ``shapes`` (distinct batch sizes seen).
    """
    rows = sorted(records, key=lambda r: r["iter"])
    rows = rows[max(min_warmup, int(len(rows) * warmup)):]
    if len(rows) < 8:
        raise ValueError(f"need at least 8 recorded iterations after warm-up, got {len(rows)}")
    quarter = len(rows) // 4
    head, tail = rows[:quarter], rows[-quarter:]
    its = np.array([r["iter"] for r in rows], float)
    rss = np.array([r["rss_mb"] for r in rows], float)
    slope = float(np.polyfit(its, rss, 1)[0])
    return {"rss_start_mb": float(np.median([r["rss_mb"] for r in head])),
            "rss_end_mb": float(np.median([r["rss_mb"] for r in tail])),
            "rss_fit_growth_mb": slope * float(its[-1] - its[0]),
            "time_start": float(np.median([r["time"] for r in head])),
            "time_end": float(np.median([r["time"] for r in tail])), "measured": len(rows),
            "shapes": len({(r["height"], r["width"]) for r in records})}
