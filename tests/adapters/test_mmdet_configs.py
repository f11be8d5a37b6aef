"""Every detection config loads, and builds its model with pretrained loading switched off."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmdet")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection" / "mmdet"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))


def test_the_config_grid_is_complete():
    vit = {f"dino-4scale_ropevit-{s}16-{p}_8xb2-90k_coco.py" for s in "sbl" for p in ("ape", "axial", "mixed",
                                                                                          "mixed-ape")}
    swin = {f"dino-4scale_ropeswin-{s}-p4-w7-{p}_8xb2-90k_coco.py" for s in "tsb" for p in ("rpb", "axial", "mixed",
                                                                                                "mixed-rpb")}
    assert vit | swin <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model(name):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401 - what custom_imports does

    cfg = Config.fromfile(str(CONFIG_DIR / name))
    assert cfg.custom_imports["imports"] == ["ropevit_dense.adapters.mmdet"]
    backbone = cfg.model.backbone
    assert backbone.init_cfg["type"] == "Pretrained"
    assert backbone.init_cfg["checkpoint"].startswith(("hf://naver-ai/", "https://github.com/SwinTransformer/"))
    backbone.init_cfg = None
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == "DINO"
    assert type(model.backbone).__name__ in ("MMRoPEViT", "MMRoPESwin")
    rope = backbone.get("rope_type")
    assert model.backbone.rope_type == rope
    if "-ape_" in name:
        assert model.backbone.pos_embed is not None
    if "rpb_" in name:
        assert model.backbone.layers[0].blocks[0].attn.relative_position_bias_table is not None


def test_metafile_and_readme_list_every_config():
    import yaml

    meta = yaml.safe_load((CONFIG_DIR / "metafile.yml").read_text())
    listed = {Path(m["Config"]).name for m in meta["Models"]}
    assert listed == set(CONFIGS)
    for m in meta["Models"]:
        assert (CONFIG_DIR.parents[2] / m["Config"]).exists()
    index = yaml.safe_load((CONFIG_DIR.parents[2] / "model-index.yml").read_text())
    assert "configs/detection/mmdet/metafile.yml" in index["Import"]
    readme = (CONFIG_DIR / "README.md").read_text()
    assert all(f"[{name}]({name})" in readme for name in CONFIGS)
