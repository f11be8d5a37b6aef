"""Each recipe's learning-rate schedule, stepped as mmengine's ParamSchedulerHook does (once after every iteration),
against the original's formula written out here:

* BEiT v2 UperNet (mmcv 1.x ``LrUpdaterHook`` + ``PolyLrUpdaterHook``, warmup 'linear', 1500 iterations, ratio 1e-6,
  power 1.0, min_lr 0): ``lr(t) = base * (1 - t / T) * (1 - (1 - t / 1500) * (1 - 1e-6))`` for ``t < 1500``,
  ``base * (1 - t / T)`` after; ``T = 160000``.
* Mask2Former (detectron2 DeepLab ``WarmupPolyLR``, power 0.9, no warmup): ``lr(t) = base * (1 - t / T) ** 0.9``.
* DINO 12 ep, B (detrex ``lr_multiplier_12ep``, fvcore ``MultiStepParamScheduler([1, 0.1], [82500, 90000])``):
  ``base`` before iteration 82500, ``0.1 * base`` from it.
* DINO 12 ep, L (detrex ``dino_vitdet_large_4scale_12ep.py``: ``WarmupParamScheduler`` of length 250 / 90000 from
  factor 0.001, milestones 300000 / 375000 of 375000 scaled to 90000 iterations): ``base * (0.001 + 0.999 * t / 250)``
  for ``t < 250``, ``base`` until 72000, ``0.1 * base`` from 72000.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
DET = ROOT / "configs" / "detection" / "mmdet"
SEG = ROOT / "configs" / "segmentation" / "mmseg"
BASES = (1.0, 0.3)  # two parameter groups with different base rates (layer decay, backbone multiplier)


def _lrs(path: Path, scope: str, at: list[int]) -> dict[int, list[float]]:
    """Learning rate of each group at iterations ``at``, from the config's own param_scheduler list."""
    from mmengine.config import Config
    from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

    cfg = Config.fromfile(str(path))
    init_default_scope(scope)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASES]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASES)], lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping schedulers without optimizer.step() is on purpose here
        schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer)) for s in cfg.param_scheduler]
        assert all(not s.by_epoch for s in schedulers)
        out, last = {}, max(at)
        for t in range(last + 1):
            if t in at:
                out[t] = [g["lr"] for g in optimizer.param_groups]
            for s in schedulers:
                s.step()
    assert cfg.train_cfg.max_iters > last
    return out


def _check(got: dict[int, list[float]], formula) -> None:
    for t, lrs in got.items():
        expected = [base * formula(t) for base in BASES]
        assert lrs == pytest.approx(expected, rel=1e-6, abs=1e-15), f"iteration {t}: {lrs} != {expected}"


def test_upernet_poly_is_not_restarted_by_the_warmup():
    def beit(t: int) -> float:
        poly = (1 - t / 160000) ** 1.0
        return poly * (1 - (1 - t / 1500) * (1 - 1e-6)) if t < 1500 else poly

    got = _lrs(SEG / "upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py", "mmseg",
               [0, 1, 750, 1499, 1500, 1501, 80000, 159999])
    _check(got, beit)
    assert got[80000][0] == pytest.approx(0.5, rel=1e-6)  # half-way: half the base rate, warmup included


def test_mask2former_warmup_poly_lr():
    got = _lrs(SEG / "mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py", "mmseg",
               [0, 1, 750, 80000, 159999])
    _check(got, lambda t: (1 - t / 160000) ** 0.9)
    assert got[159999][0] > 0  # the last iteration still trains: (1 / 160000) ** 0.9 of the base rate


def test_dino_b_multistep():
    for name in ("dino-4scale_ropevit-b16-mixed_8xb2-90k_coco.py",
                 "dino-4scale_ropeswin-t-p4-w7-mixed_8xb2-90k_coco.py"):
        _check(_lrs(DET / name, "mmdet", [0, 1, 82499, 82500, 89999]), lambda t: 0.1 if t >= 82500 else 1.0)


def test_dino_l_warmup_and_multistep_at_80_percent():
    def large(t: int) -> float:
        if t < 250:
            return 0.001 + 0.999 * t / 250
        return 0.1 if t >= 72000 else 1.0

    got = _lrs(DET / "dino-4scale_ropevit-l16-mixed_8xb2-90k_coco.py", "mmdet",
               [0, 1, 125, 249, 250, 251, 71999, 72000, 89999])
    _check(got, large)
