"""Benchmark rows (tools/benchmark.py, ropevit_dense.benchmark) for DINOv3-B and EVA-02-B: each family's own
position encoding against its no-position floor (for EVA-02 that floor drops the APE too)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("arch, mode, rope, ape", [
    ("dinov3-b", "none", False, False), ("dinov3-b", "axial", True, False),
    ("eva02-b", "none", False, False), ("eva02-b", "ape", False, True), ("eva02-b", "axial", True, True)])
def test_family_rows_build_the_family_backbone(arch, mode, rope, ape):
    from ropevit_dense import benchmark as bench

    model = bench.build(dict(arch=arch, mode=mode, layout="global", size=224, device="cpu", config=None, step="infer"))
    assert model.family.name == arch.split("-")[0] and model.embed_dim == 768 and model.depth == 12
    assert (model.rope is not None) == rope and (model.pos_embed is not None) == ape
    if rope:
        assert model.rope.y_first and model.rope.theta == (100.0 if arch.startswith("dinov3") else 10000.0)


def test_config_floor_of_an_eva02_detector_drops_rope_and_ape():
    pytest.importorskip("mmdet")
    from ropevit_dense import benchmark as bench

    config = ROOT / "configs/detection/mmdet/eva02/tiny/dino-4scale_eva02-tiny-vitdet_1xb4-lsj-800i_tinycoco.py"
    assert bench.position_label(bench.load_config(str(config)).model.backbone) == "eva02"
    floor = bench.load_config(str(config), floor=True).model.backbone
    assert floor.rope_type is None and floor.use_ape is False and floor.family == "eva02"
