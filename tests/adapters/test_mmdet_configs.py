"""Every detection config loads and builds its model (pretrained loading switched off) with the recipe's settings;
README and metafile list every config and carry the paper's numbers, and only those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("mmdet")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection" / "mmdet"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))

# Heo et al., ECCV 2024 (arXiv 2403.13298v2), Table 1 (DINO-ViTDet) and Table 2 (DINO-Swin), COCO box AP
PAPER_BOX_AP = {
    "ropevit-b16-ape": 49.4, "ropevit-b16-axial": 50.8, "ropevit-b16-mixed": 51.2, "ropevit-b16-mixed-ape": 51.1,
    "ropevit-l16-ape": 51.1, "ropevit-l16-axial": 52.2, "ropevit-l16-mixed": 52.9, "ropevit-l16-mixed-ape": 52.8,
    "ropeswin-t-p4-w7-rpb": 51.3, "ropeswin-t-p4-w7-axial": 51.6, "ropeswin-t-p4-w7-mixed": 51.8,
    "ropeswin-t-p4-w7-mixed-rpb": 51.6,
    "ropeswin-s-p4-w7-rpb": 53.0, "ropeswin-s-p4-w7-axial": 53.1, "ropeswin-s-p4-w7-mixed": 53.3,
    "ropeswin-s-p4-w7-mixed-rpb": 53.6,
    "ropeswin-b-p4-w7-rpb": 54.2, "ropeswin-b-p4-w7-axial": 54.4, "ropeswin-b-p4-w7-mixed": 54.5,
    "ropeswin-b-p4-w7-mixed-rpb": 54.5,
}


def _key(name: str) -> str:
    return name.removeprefix("dino-4scale_").removesuffix("_8xb2-90k_coco.py")


def test_the_config_grid_is_complete():
    vit = {f"dino-4scale_ropevit-{s}16-{p}_8xb2-90k_coco.py" for s in "sbl" for p in ("ape", "axial", "mixed",
                                                                                          "mixed-ape")}
    swin = {f"dino-4scale_ropeswin-{s}-p4-w7-{p}_8xb2-90k_coco.py" for s in "tsb" for p in ("rpb", "axial", "mixed",
                                                                                                "mixed-rpb")}
    vitdet = {f"dino-4scale_ropevit-{s}16-ape-relpos_8xb2-90k_coco.py" for s in "bl"}
    assert vit | swin | vitdet <= set(CONFIGS)


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
    assert model.backbone.rope_type == backbone.get("rope_type")
    # detectron2's ViT and Swin let zero-padded window tokens attend as keys
    assert model.backbone.window_padding == "zero"
    if "-ape" in name:
        assert model.backbone.pos_embed is not None
        assert model.backbone.ape_antialias is False  # detectron2's get_abs_pos: plain bicubic, every forward
        assert model.backbone.ape_grid == (14, 14)
    if "-relpos_" in name:  # detectron2 ViT: window tables 2 * 14 - 1, global tables sized for 1024 / 16
        assert model.backbone.blocks[0].attn.rel_pos_h.shape[0] == 27
        assert model.backbone.blocks[2 if "-b16" in name else 5].attn.rel_pos_w.shape[0] == 127
    elif "ropevit" in name:
        assert not any("rel_pos" in n for n, _ in model.backbone.named_parameters())
    if "rpb_" in name:
        assert model.backbone.layers[0].blocks[0].attn.relative_position_bias_table is not None
    assert cfg.optim_wrapper.paramwise_cfg.rule == "detectron2"
    assert cfg.optim_wrapper.type == "OptimWrapper"  # detrex trains DINO in fp32
    assert cfg.auto_scale_lr == dict(base_batch_size=16, enable=False)
    assert cfg.randomness == dict(seed=None, diff_rank_seed=True)  # detrex train.seed = -1
    assert cfg.env_cfg.cudnn_benchmark is False
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_cfg.max_iters == 90000


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


def test_paper_numbers_in_readme_and_metafile():
    """Every number of the paper's Tables 1-2 beside its config (README row and metafile), marked as the paper's;
    no number for a config the paper does not report."""
    import yaml

    readme = (CONFIG_DIR / "README.md").read_text()
    meta = {Path(m["Config"]).name: m for m in yaml.safe_load((CONFIG_DIR / "metafile.yml").read_text())["Models"]}
    for name in CONFIGS:
        row = next(line for line in readme.splitlines() if line.startswith("|") and f"[{name}]({name})" in line)
        paper_cell = row.rstrip(" |").rsplit("|", 1)[1].strip()
        results = meta[name].get("Results")
        expected = PAPER_BOX_AP.get(_key(name))
        if expected is None:
            assert not re.search(r"\d", paper_cell.replace("†", "")), (name, paper_cell)
            assert results is None, name
        else:
            assert paper_cell == f"{expected:.1f}", (name, paper_cell)
            (result,) = results
            assert result["Metrics"] == {"box AP (paper)": expected}
            assert "paper" in result["Source"] and "not a result of this toolkit" in result["Source"]


def test_metafile_loads_with_model_index():
    modelindex = pytest.importorskip("modelindex")
    index = modelindex.load(str(CONFIG_DIR.parents[2] / "model-index.yml"))
    names = {m.name for m in index.models}
    assert {Path(n).stem for n in CONFIGS} <= names
