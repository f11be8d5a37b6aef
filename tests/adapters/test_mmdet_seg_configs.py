"""Instance / panoptic segmentation configs for mmdet: every config builds; the recipes match their sources."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("mmdet")

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "segmentation" / "mmdet"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))
TINY = sorted(p.name for p in (CONFIG_DIR / "tiny").glob("*.py"))
SWIN_MODES = ("rpb", "axial", "mixed", "mixed-rpb")
VIT_MODES = ("ape", "axial", "mixed", "mixed-ape")
# one full-size build per model family in the default run (the rest build with fewer blocks; all full-size: slow)
FULL_SIZE = (
    "mask2former_ropeswin-t-p4-w7-mixed_8xb2-lsj-50e_coco-panoptic.py",
    "mask2former_ropevit-b16-mixed-ape_8xb2-lsj-50e_coco.py",
    "mask-rcnn_ropevit-b16-mixed_8xb8-lsj-100e_coco.py",
    "cascade-mask-rcnn_ropevit-b16-axial_8xb8-lsj-100e_coco.py",
)


def _load(name: str):
    from mmengine.config import Config

    return Config.fromfile(str(CONFIG_DIR / name))


def _build(cfg, *, shrink: bool):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    import_modules_from_strings(**cfg.custom_imports)
    cfg.model.backbone.init_cfg = None
    if "panoptic_head" in cfg.model:  # the 9-layer decoder at full width is slow to build
        cfg.model.panoptic_head.transformer_decoder.num_layers = 1
    if shrink:
        b = cfg.model.backbone
        if b.type == "RoPEViT":
            b.update(depth=2, global_block_indexes=(1,))
        else:
            b.update(depths=(1, 1, 1, 1))
    init_default_scope("mmdet")
    return MODELS.build(cfg.model)


def test_the_config_grid_is_complete():
    grid = {f"mask2former_ropeswin-{s}-p4-w7-{p}_8xb2-lsj-50e_{t}.py" for s in "tsb" for p in SWIN_MODES
            for t in ("coco-panoptic", "coco")}
    grid |= {f"mask2former_ropevit-{s}16-{p}_8xb2-lsj-50e_{t}.py" for s in "bl" for p in VIT_MODES
             for t in ("coco-panoptic", "coco")}
    grid |= {f"{d}_ropevit-{s}16-{p}_8xb8-lsj-100e_coco.py" for d in ("mask-rcnn", "cascade-mask-rcnn") for s in "bl"
             for p in VIT_MODES}
    assert grid == set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model(name):
    cfg = _load(name)
    backbone = dict(cfg.model.backbone)
    assert cfg.default_scope == "mmdet"
    assert backbone["init_cfg"]["type"] == "Pretrained"
    assert backbone["init_cfg"]["checkpoint"].startswith(("hf://naver-ai/", "https://github.com/SwinTransformer/"))
    model = _build(cfg, shrink=name not in FULL_SIZE)
    assert type(model.backbone).__name__ in ("MMRoPEViT", "MMRoPESwin")
    assert model.backbone.rope_type == backbone.get("rope_type")
    assert model.backbone.window_padding == "zero", "the originals attend padded window tokens as zeros"
    if "-ape_" in name or "mixed-ape" in name:
        assert model.backbone.pos_embed is not None
    if "rpb_" in name:
        assert model.backbone.layers[0].blocks[0].attn.relative_position_bias_table is not None
    if "mixed-rpb" in name:
        assert backbone["init_cfg"]["strict"] is False  # the RoPE-Mixed checkpoint has no bias tables
    if name.startswith("mask2former"):
        assert cfg.model.test_cfg.panoptic_on is name.endswith("panoptic.py")
        assert cfg.model.panoptic_head.in_channels == ([256] * 4 if "ropevit" in name else
                                                       [backbone["embed_dim"] * 2 ** i for i in range(4)])
    if "ropevit" in name:
        depth = backbone["depth"]
        assert backbone["global_block_indexes"] == ((2, 5, 8, 11) if depth == 12 else (5, 11, 17, 23))
        assert backbone["drop_path_rate"] == (0.1 if depth == 12 else 0.4)
        assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == (0.7 if depth == 12 else 0.8)
        assert cfg.optim_wrapper.paramwise_cfg.num_layers == depth


def test_metafile_and_readme_list_every_config():
    import yaml

    meta = yaml.safe_load((CONFIG_DIR / "metafile.yml").read_text())
    listed = {Path(m["Config"]).name for m in meta["Models"]}
    assert listed == set(CONFIGS)
    for m in meta["Models"]:
        assert (ROOT / m["Config"]).exists()
    index = yaml.safe_load((ROOT / "model-index.yml").read_text())
    assert "configs/segmentation/mmdet/metafile.yml" in index["Import"]
    readme = (CONFIG_DIR / "README.md").read_text()
    assert all(f"[{name}]({name})" in readme for name in CONFIGS)
    assert all(f"tiny/{name}" in readme for name in TINY)


# -- the Mask2Former Swin recipes against mmdet's own ---------------------------------------------------------------
@pytest.mark.parametrize("task", ["coco-panoptic", "coco"])
@pytest.mark.parametrize("size", ["t", "s"])
def test_mask2former_swin_matches_mmdet_recipe(task, size):
    """Everything but the backbone equals mmdet's Swin recipe of the same size and task, number for number."""
    from mmengine.hub import get_config

    ours = _load(f"mask2former_ropeswin-{size}-p4-w7-mixed_8xb2-lsj-50e_{task}.py")
    ref = get_config(f"mmdet::mask2former/mask2former_swin-{size}-p4-w7-224_8xb2-lsj-50e_{task}.py")

    def plain(x):
        return re.sub(r", '_scope_': 'mmdet'", "", str(x))

    for key in ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator",
                "param_scheduler", "train_cfg", "default_hooks", "auto_scale_lr"):
        assert plain(ours[key]) == plain(ref[key]), key
    for key in ("data_preprocessor", "panoptic_head", "panoptic_fusion_head", "train_cfg", "test_cfg"):
        assert plain(ours.model[key]) == plain(ref.model[key]), key
    assert ours.model.type == ref.model.type == "Mask2Former"
    assert plain(ours.optim_wrapper.optimizer) == plain(ref.optim_wrapper.optimizer)
    assert ours.optim_wrapper.clip_grad == ref.optim_wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)
    assert ours.optim_wrapper.type == ref.optim_wrapper.type == "OptimWrapper"  # mmdet's recipe trains in fp32
    b, rb = ours.model.backbone, ref.model.backbone
    assert (b.embed_dim, b.depths, b.num_heads, b.window_size, b.drop_path_rate, b.out_indices) == (
        rb.embed_dims, tuple(rb.depths), tuple(rb.num_heads), rb.window_size, rb.drop_path_rate, rb.out_indices)


def _groups(name: str, **backbone):
    from mmengine.optim import build_optim_wrapper

    cfg = _load(name)
    model = _build(cfg, shrink=False) if not backbone else None
    if model is None:
        cfg.model.backbone.update(backbone)
        model = _build(cfg, shrink=False)
    if cfg.optim_wrapper.type == "AmpOptimWrapper":  # asserts a GPU; the parameter groups are the same
        cfg.optim_wrapper.type = "OptimWrapper"
        cfg.optim_wrapper.pop("loss_scale")
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    groups = {id(g["params"][0]): g for g in optimizer.param_groups}
    named = dict(model.named_parameters())
    return lambda n: groups[id(named[n])]


def test_mask2former_swin_optimizer_groups_match_the_recipe():
    """mmdet's Swin recipe: backbone lr x0.1 (norms and bias tables too, without decay); here also RoPE freqs."""
    group = _groups("mask2former_ropeswin-t-p4-w7-mixed-rpb_8xb2-lsj-50e_coco-panoptic.py", depths=(2, 2, 2, 2))
    qkv = group("backbone.layers.0.blocks.0.attn.qkv.weight")
    assert qkv["lr"] == pytest.approx(1e-5) and qkv["weight_decay"] == pytest.approx(0.05)
    for name in ("backbone.layers.0.blocks.0.norm1.weight", "backbone.patch_embed.norm.weight",
                 "backbone.layers.1.blocks.1.attn.relative_position_bias_table",
                 "backbone.layers.2.blocks.0.attn.rope.freqs", "backbone.norm3.weight"):
        assert group(name)["lr"] == pytest.approx(1e-5) and group(name)["weight_decay"] == 0.0, name
    for name in ("panoptic_head.query_embed.weight", "panoptic_head.level_embed.weight"):
        assert group(name)["lr"] == pytest.approx(1e-4) and group(name)["weight_decay"] == 0.0, name
    assert group("panoptic_head.cls_embed.weight")["weight_decay"] == pytest.approx(0.05)


@pytest.mark.parametrize("name", ["mask2former_ropevit-b16-mixed-ape_8xb2-lsj-50e_coco.py",
                                  "mask-rcnn_ropevit-b16-mixed-ape_8xb8-lsj-100e_coco.py"])
def test_vit_layer_decay_groups(name):
    """ViTDet's layer decay 0.7 over 12 blocks; no decay on norms, the APE and RoPE frequencies."""
    base = 1e-4
    wd = 0.05 if name.startswith("mask2former") else 0.1
    group = _groups(name)
    for i in (0, 11):
        g = group(f"backbone.blocks.{i}.attn.qkv.weight")
        assert g["lr"] == pytest.approx(base * 0.7 ** (12 - i)) and g["weight_decay"] == pytest.approx(wd)
        f = group(f"backbone.blocks.{i}.attn.rope.freqs")
        assert f["lr"] == pytest.approx(base * 0.7 ** (12 - i)) and f["weight_decay"] == 0.0
    assert group("backbone.pos_embed")["lr"] == pytest.approx(base * 0.7 ** 13)
    assert group("backbone.pos_embed")["weight_decay"] == 0.0
    assert group("backbone.blocks.3.norm1.weight")["weight_decay"] == 0.0
    assert group("neck.levels.0.lateral.weight")["lr"] == pytest.approx(base)
