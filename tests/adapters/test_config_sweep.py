"""Every shipped mmdet / mmseg config (every ``*.py`` under a ``mmdet`` or ``mmseg`` config folder, ``_base_``
excepted, so configs added later are covered): the real model, one training loss and backward on a small generated
batch, then the same under CPU bf16 autocast.

* Every trainable parameter receives a gradient: DDP with ``find_unused_parameters=False`` (the default of our
  launchers) cannot fail on the first iteration.
* bf16 autocast: the loss and every gradient are finite; the backbone's outputs are within 3 % (relative Frobenius
  norm) of fp32 and the total loss within 5 %. Why these tolerances: bf16 keeps 8 significant bits (rounding error
  2^-9, about 0.2 %) and the errors of the rounded matmuls and convolutions add up over the layers (measured at random
  initialisation: backbone 0.3-1.5 %, total loss up to 1.2 %). DINO is checked differently: its encoder's top-k
  query selection and Hungarian matching may pick other, nearly as good queries under bf16 at random
  initialisation, which moves the matched loss terms as a whole by up to 7.5 % (measured over the shipped DINO
  structures; backbone outputs within 0.3 %). Its denoising terms (``dn_loss_*``), whose targets are fixed by
  construction, are the precise comparison: within 5 % (measured: 0.1-0.3 %); the total only within 15 %.

The default run builds cheap variants (:func:`ropevit_dense.diagnostics.mm_models.shrink` says what is kept: every
class, width, position mode and window size; one block of each kind, fewer queries / proposals, small inputs), one
per structure: configs whose cheap variants differ only in widths (S / B / L, T / S / B of one recipe and position
mode) are checked once, on the narrowest, and the others are reported as skipped with its name. Every config at its
real size runs with --run-slow (minutes). About 65 structures at 1-5 s each on 2 quiet cores.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(
    str(p.relative_to(ROOT / "configs"))
    for framework in ("mmdet", "mmseg")
    for folder in (ROOT / "configs").rglob(framework) if folder.is_dir()
    for p in folder.rglob("*.py") if "_base_" not in p.parts
)
SIZES = {"mmdet": (96, 128), "mmseg": (32, 32)}
FULL_SIZES = {"mmdet": (256, 320), "mmseg": (64, 64)}  # DINO's 900 queries need as many encoder tokens
LOSS_RTOL, FEATURE_RTOL = 0.05, 0.03
MATCHED_LOSS_RTOL = 0.15  # total of a DETR-style detector, whose matching may change under bf16


def test_the_sweep_finds_every_config_folder():
    names = {Path(c).name for c in CONFIGS}
    assert "dino-4scale_ropevit-b16-mixed_8xb2-90k_coco.py" in names
    assert "mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py" in names
    assert "mask2former_ropeswin-tiny-mixed_1xb4-400i_tinyade20k-64x64.py" in names
    assert len(CONFIGS) >= 60


def test_only_sizes_share_a_check(checked_as):
    det, seg = "detection/mmdet/", "segmentation/mmseg/"
    assert checked_as[det + "dino-4scale_ropevit-l16-mixed_8xb2-90k_coco.py"] == \
        det + "dino-4scale_ropevit-s16-mixed_8xb2-90k_coco.py"
    assert checked_as[det + "dino-4scale_ropeswin-b-p4-w7-mixed-rpb_8xb2-90k_coco.py"] in {  # T and S: both 96 wide
        det + f"dino-4scale_ropeswin-{size}-p4-w7-mixed-rpb_8xb2-90k_coco.py" for size in "ts"}
    assert checked_as[seg + "upernet_ropevit-b16-liere_8xb2-amp-160k_ade20k-512x512.py"] == \
        seg + "upernet_ropevit-b16-liere_8xb2-amp-160k_ade20k-512x512.py"
    # another position mode is another structure
    assert checked_as[det + "dino-4scale_ropevit-l16-axial_8xb2-90k_coco.py"] != \
        checked_as[det + "dino-4scale_ropevit-l16-mixed_8xb2-90k_coco.py"]


def _cheap(name: str):
    from ropevit_dense.diagnostics import mm_models as mm

    cfg = mm.load_config(ROOT / "configs" / name)
    if "tiny" in Path(name).parts:
        mm.set_input_size(cfg, SIZES[cfg.default_scope])
    else:
        mm.shrink(cfg, size=SIZES[cfg.default_scope])
    return cfg


@pytest.fixture(scope="session")
def checked_as() -> dict[str, str]:
    """config -> the config whose cheap variant is checked for it (the narrowest one of the same structure)."""
    from ropevit_dense.diagnostics import mm_models as mm

    groups: dict[str, list[tuple[int, str]]] = {}
    for name in CONFIGS:
        cfg = _cheap(name)
        groups.setdefault(f"{cfg.default_scope}:{mm.structure_key(cfg)}", []).append((mm.width(cfg), name))
    return {name: min(members)[1] for members in groups.values() for _, name in members}


def _backbone_outputs(model) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    outs: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        outs.extend(o.detach().float() for o in (output if isinstance(output, (tuple, list)) else [output]))

    handle = model.backbone.register_forward_hook(hook)
    return outs, handle


def _check(name: str, *, full_size: bool) -> None:
    from ropevit_dense.diagnostics import mm_models as mm

    if full_size:
        cfg = mm.load_config(ROOT / "configs" / name)
        mm.set_input_size(cfg, FULL_SIZES[cfg.default_scope])
    else:
        cfg = _cheap(name)
    framework = cfg.default_scope
    size = (FULL_SIZES if full_size else SIZES)[framework]
    torch.manual_seed(0)
    model = mm.build_model(cfg)
    batch = mm.synthetic_batch(model, framework, size=size)

    feats32, handle = _backbone_outputs(model)
    loss32, terms32 = mm.training_loss(model, batch)
    handle.remove()
    loss32.backward()
    missing = mm.parameters_without_grad(model)
    assert not missing, f"{len(missing)} trainable parameters get no gradient (DDP would fail): {missing[:10]}"
    assert math.isfinite(loss32.item())

    model.zero_grad(set_to_none=True)
    feats16, handle = _backbone_outputs(model)
    if getattr(model, "rpn_head", None) is not None:
        # mmcv's CPU nms kernel takes float32 boxes and scores only; under CPU autocast the RPN scores are bf16.
        # (CUDA fp16 autocast, the recipes' AMP, is covered by tools/gpu_check.py.) Fails here once mmcv accepts
        # them, and the bf16 checks below then apply to two-stage detectors too.
        with pytest.raises(RuntimeError, match="expected scalar type Float but found BFloat16"):
            mm.training_loss(model, batch, autocast=torch.bfloat16)
        handle.remove()
        return
    loss16, terms16 = mm.training_loss(model, batch, autocast=torch.bfloat16)
    handle.remove()
    loss16.backward()
    assert math.isfinite(loss16.item()), f"bf16 loss {loss16.item()}"
    bad = mm.non_finite_grads(model)
    assert not bad, f"non-finite bf16 gradients: {bad[:10]}"
    assert len(feats16) == len(feats32)
    for i, (a, b) in enumerate(zip(feats16, feats32)):
        err = float((a - b).norm() / b.norm())
        assert err < FEATURE_RTOL, f"backbone output {i}: bf16 differs from fp32 by {err:.2%}"
    fixed = sorted(k for k in terms32 if "dn_loss" in k)  # denoising: targets independent of the matching
    total_rtol = MATCHED_LOSS_RTOL if fixed else LOSS_RTOL
    if fixed:
        dn32, dn16 = (sum(float(terms[k]) for k in fixed) for terms in (terms32, terms16))
        rel = abs(dn16 - dn32) / abs(dn32)
        assert rel < LOSS_RTOL, f"bf16 denoising loss {dn16:.4f} vs fp32 {dn32:.4f} ({rel:.2%})"
    rel = abs(loss16.item() - loss32.item()) / abs(loss32.item())
    assert rel < total_rtol, f"bf16 loss {loss16.item():.4f} vs fp32 {loss32.item():.4f} ({rel:.2%})"


@pytest.mark.parametrize("name", CONFIGS)
def test_every_parameter_trains_and_bf16_matches_fp32(name, checked_as):
    if checked_as[name] != name:
        pytest.skip(f"same structure up to widths as {checked_as[name]}, checked there (real size: --run-slow)")
    _check(name, full_size=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", [c for c in CONFIGS if "tiny" not in Path(c).parts])
def test_full_size_model(name):
    """The same at the configs' real depths and head sizes (ViT-L: 24 blocks); minutes in all."""
    _check(name, full_size=True)
