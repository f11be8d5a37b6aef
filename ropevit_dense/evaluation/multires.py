"""Multi-resolution evaluation: test one trained detector or segmentor at several input sizes.

The paper's multi-resolution protocol (RoPE-ViT, Heo et al. 2024, Fig. 3 / 4) evaluates a model trained at one
resolution at smaller and larger ones, which is where position encodings that extrapolate (RoPE) and those that
are interpolated (APE) part ways. Here the test-time ``Resize`` of an mmdet / mmseg config is set to each short
side in turn (the long-side cap scales with it, keeping the config's aspect limit) and the config's own test loop
and metric run through an mmengine ``Runner``.
"""

from __future__ import annotations

import copy
import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

DEFAULT_METRICS = {"mmdet": "coco/bbox_mAP", "mmseg": "mIoU"}


@dataclass
class MultiResResult:
    """One evaluation: the short side of the test images and the metrics the test loop returned."""

    resolution: int
    metrics: dict[str, float]

    def value(self, key: str) -> float:
        if key not in self.metrics:
            raise KeyError(f"metric '{key}' not among the test loop's results {sorted(self.metrics)}")
        return float(self.metrics[key])


def _resize_transform(pipeline: list) -> dict:
    for t in pipeline:
        if t.get("type") in ("Resize", "mmdet.Resize", "mmseg.Resize") and t.get("scale") is not None:
            return t
    raise ValueError("the config's test pipeline has no Resize with a fixed 'scale' to vary; multi-resolution "
                     f"evaluation needs one (pipeline: {[t.get('type') for t in pipeline]})")


def set_test_resolution(cfg: Any, short_side: int, *, whole: bool = False) -> Any:
    """A copy of ``cfg`` whose test images have short side ``short_side``.

    Args:
        cfg (mmengine.Config): a detection or segmentation config.
        short_side (int): the target short side in pixels.
        whole (bool): segmentation: whole-image inference instead of the config's sliding window, so that the
            backbone sees the whole image at the new size. Default: False.
    """
    if short_side < 1:
        raise ValueError(f"resolution must be a positive short side in pixels, got {short_side}")
    cfg = copy.deepcopy(cfg)
    pipeline = cfg.test_dataloader.dataset.pipeline
    resize = _resize_transform(pipeline)
    old_scale = tuple(resize["scale"])
    long0, short0 = max(old_scale), min(old_scale)
    resize["scale"] = (max(short_side, round(short_side * long0 / short0)), short_side)
    resize["keep_ratio"] = True
    for t in pipeline:  # a fixed-size Pad to the resize scale (large-scale-jitter configs) follows it
        if t.get("type") in ("Pad", "mmdet.Pad", "mmseg.Pad") and t.get("size") is not None \
                and tuple(t["size"]) == old_scale:
            t["size"] = resize["scale"]
    if whole:
        if cfg.get("default_scope") != "mmseg":
            raise ValueError("whole=True applies to segmentation configs (default_scope 'mmseg') only")
        cfg.model.test_cfg = dict(mode="whole")
    return cfg


def evaluate_at_resolutions(
    config: Union[str, os.PathLike, Any],
    checkpoint: Union[str, os.PathLike],
    resolutions: Sequence[int],
    *,
    work_dir: Union[str, os.PathLike],
    whole: bool = False,
    cfg_options: Optional[dict] = None,
    progress: bool = True,
) -> list[MultiResResult]:
    """Run the config's test loop once per resolution.

    Args:
        config: path of an mmdet / mmseg config, or a loaded ``mmengine.Config``.
        checkpoint: the trained model (an mmengine checkpoint file).
        resolutions: test short sides in pixels.
        work_dir: where the runners write their logs (one sub-folder per resolution).
        whole: segmentation only: whole-image inference (see :func:`set_test_resolution`).
        cfg_options: extra config overrides (``Config.merge_from_dict`` keys).
        progress: show a progress bar over resolutions.

    Returns:
        list[MultiResResult]: one per resolution, in the given order.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if not resolutions:
        raise ValueError("no resolutions given")
    if isinstance(config, (str, os.PathLike)):
        if not Path(config).is_file():
            raise FileNotFoundError(f"config not found: {config}")
        cfg = Config.fromfile(str(config))
    else:
        cfg = copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get("default_scope") not in DEFAULT_METRICS:
        raise ValueError(f"expected an mmdet or mmseg config (default_scope), got {cfg.get('default_scope')!r}")
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    results = []
    items: Any = list(resolutions)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="resolutions", unit="res")
    for r in items:
        run_cfg = set_test_resolution(cfg, int(r), whole=whole)
        run_cfg.work_dir = str(Path(work_dir) / f"short{int(r)}")
        run_cfg.experiment_name = f"multires_{int(r)}"
        metrics = Runner.from_cfg(run_cfg).test()
        results.append(MultiResResult(int(r), {k: float(v) for k, v in metrics.items() if _is_number(v)}))
    return results


def _is_number(v: Any) -> bool:
    """Python and numpy scalars (mmseg returns numpy float32), not bools or strings."""
    import numbers

    import numpy as np

    return isinstance(v, (numbers.Number, np.number)) and not isinstance(v, (bool, np.bool_)) and np.ndim(v) == 0


def write_results(rows: Sequence[tuple[str, int, float]], csv_path: Union[str, os.PathLike], *,
                  metric: str) -> str:
    """Write ``(model, resolution, value)`` rows to CSV; return them as a markdown table (models x resolutions)."""
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "resolution", metric])
        for model, res, value in rows:
            w.writerow([model, res, f"{value:.4f}"])
    resolutions = sorted({r for _, r, _ in rows})
    models = list(dict.fromkeys(m for m, _, _ in rows))
    table = {(m, r): v for m, r, v in rows}
    lines = [f"| model \\ short side | {' | '.join(str(r) for r in resolutions)} |",
             "|---" * (len(resolutions) + 1) + "|"]
    for m in models:
        cells = [f"{table[m, r]:.2f}" if (m, r) in table and not math.isnan(table[m, r]) else "—" for r in resolutions]
        lines.append(f"| {m} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot_metric_vs_resolution(rows: Sequence[tuple[str, int, float]], png_path: Union[str, os.PathLike], *,
                              metric: str, train_resolution: Optional[int] = None, title: str = "") -> None:
    """Line plot of ``metric`` against the test short side, one line per model (PNG, matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for model in dict.fromkeys(m for m, _, _ in rows):
        pts = sorted((r, v) for m, r, v in rows if m == model)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
    if train_resolution:
        ax.axvline(train_resolution, color="grey", linestyle="--", linewidth=1, label="train resolution")
    ax.set_xlabel("test short side (pixels)")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
