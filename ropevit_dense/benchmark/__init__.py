"""Latency and peak-memory benchmark of the backbones against two floors: the same backbone without position
encoding (``'none'``) and an outside model, timm's plain ViT / Swin (``'timm'``).

:mod:`.models` builds the rows' models, :mod:`.measure` times them round-robin and measures peak memory in a child
process per row, :mod:`.report` writes the table and the plot. ``tools/benchmark.py`` is the command line.
"""

from .measure import keep_heap, latencies, measure_rows, peak_memory, run_isolated
from .models import ARCHS, LAYOUTS, MODES, build, load_config, position_label
from .report import markdown, plot, write_csv

__all__ = ["ARCHS", "LAYOUTS", "MODES", "build", "keep_heap", "latencies", "load_config", "markdown", "measure_rows",
           "peak_memory", "plot", "position_label", "run_isolated", "write_csv"]
