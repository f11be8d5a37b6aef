"""DINOv3 / EVA-02 configs (configs/*/dinov3, configs/*/eva02): every one builds its model, follows its recipe, and
names hub weights of the right family; the detection optimizer is detrex's DINO-EVA-02 one."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DET = sorted(p for d in ("dinov3", "eva02") for p in (ROOT / "configs/detection/mmdet" / d).rglob("*.py"))
SEG = sorted((ROOT / "configs/segmentation/mmseg/dinov3").rglob("*.py"))


def _cfg(path: Path):
    from mmengine.config import Config

    return Config.fromfile(str(path))


def test_the_family_config_grid_is_complete():
    det = {p.name for p in DET}
    assert {f"dino-4scale_{f}-{s}16-vitdet-w16_8xb2-lsj-90k_coco.py" for f in ("dinov3", "eva02") for s in "bl"} <= det
    seg = {p.name for p in SEG}
    assert {"upernet_dinov3-b16_8xb2-amp-160k_ade20k-512x512.py", "upernet_dinov3-l16_8xb2-amp-160k_ade20k-512x512.py",
            "mask2former_dinov3-l16_8xb2-amp-160k_ade20k-512x512.py"} <= seg


@pytest.mark.parametrize("path", DET, ids=lambda p: p.name)
def test_detection_config_builds_its_model(path):
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401 - what custom_imports does
    from ropevit_dense.checkpoints.zoo import PRETRAINED

    cfg = _cfg(path)
    backbone = cfg.model.backbone
    family = "eva02" if "eva02" in path.name else "dinov3"
    assert backbone.family == family
    if backbone.init_cfg is not None:  # the published configs: hub weights that the name table knows
        assert backbone.init_cfg.checkpoint in {s.source for s in PRETRAINED.values() if s.vit_family == family}
        assert backbone.window_size == 16 and cfg.model.data_preprocessor.batch_augments[0].size == (1024, 1024)
        large = backbone.depth == 24
        assert backbone.global_block_indexes == ((5, 11, 17, 23) if large else (2, 5, 8, 11))
        assert backbone.drop_path_rate == (0.4 if large else 0.1)
        paramwise = cfg.optim_wrapper.paramwise_cfg
        assert paramwise.rule == "detectron2" and paramwise.weight_decay_norm is None
        assert backbone.window_padding == "zero"  # detectron2's and EVA-02's ViT
        assert (paramwise.layer_decay_rate, paramwise.num_layers) == ((0.8, 24) if large else (0.7, 12))
        assert [t.type for t in cfg.train_dataloader.dataset.pipeline][3:5] == ["RandomResize", "RandomCrop"]
        backbone.init_cfg = None
        backbone.depth, backbone.global_block_indexes = 3, (2,)  # the full width, fewer blocks: quicker to build
        cfg.optim_wrapper.paramwise_cfg.num_layers = 3
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == "DINO" and type(model.backbone).__name__ == "MMRoPEViT"
    assert model.backbone.family.name == family and model.backbone.cls_token is None
    assert model.backbone.rope_position == "interpolate"


def test_eva02_detection_optimizer_is_detrex_dino_eva02():
    """lr = 1e-4 * 0.7 ** (13 - layer id), weight decay 1e-4 on every parameter (norms and APE too)."""
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401

    cfg = _cfg(ROOT / "configs/detection/mmdet/eva02/dino-4scale_eva02-b16-vitdet-w16_8xb2-lsj-90k_coco.py")
    cfg.model.backbone.init_cfg = None
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    groups = {id(g["params"][0]): g for g in build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups}
    named = dict(model.named_parameters())

    def group(name):
        return groups[id(named[name])]

    for name, layer in (("backbone.patch_embed.proj.weight", 0), ("backbone.pos_embed", 0),
                        ("backbone.blocks.0.attn.qkv.weight", 1), ("backbone.blocks.11.mlp.norm.weight", 12),
                        ("neck.0.levels.0.lateral_norm.weight", 13), ("bbox_head.cls_branches.0.weight", 13)):
        assert group(name)["lr"] == pytest.approx(1e-4 * 0.7 ** (13 - layer)), name
        assert group(name)["weight_decay"] == pytest.approx(1e-4), name


@pytest.mark.parametrize("path", SEG, ids=lambda p: p.name)
def test_segmentation_config_builds_its_model(path):
    pytest.importorskip("mmseg")
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from mmseg.registry import MODELS

    cfg = _cfg(path)
    import_modules_from_strings(**cfg.custom_imports)
    backbone = cfg.model.backbone
    assert backbone.family == "dinov3"
    published = backbone.init_cfg is not None
    if published:
        checkpoint = backbone.init_cfg.checkpoint
        assert checkpoint.startswith("hf://timm/vit_") and "_dinov3_qkvb." in checkpoint
        assert backbone.out_indices == ((4, 11, 17, 23) if backbone.depth == 24 else (2, 5, 8, 11))
        backbone.init_cfg = None
    if path.name.startswith("mask2former"):  # the 9-layer head at full width is slow to build; shrink the decoder
        cfg.model.decode_head.transformer_decoder.num_layers = 1
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    # all-global: cls and register tokens pass through the blocks, the outputs hold patch tokens only
    assert model.backbone.num_prefix_tokens == 5 and model.backbone.norm is not None
    if published and path.name.startswith("upernet"):
        assert cfg.model.test_cfg == dict(mode="slide", crop_size=(512, 512), stride=(341, 341))
        assert cfg.optim_wrapper.paramwise_cfg.num_layers == backbone.depth
        assert cfg.optim_wrapper.paramwise_cfg.rule == "beit"  # BEiT's rule: registers decay like the cls token


def test_readmes_list_every_family_config():
    for folder in ("configs/detection/mmdet/dinov3", "configs/detection/mmdet/eva02",
                   "configs/segmentation/mmseg/dinov3"):
        readme = (ROOT / folder / "README.md").read_text()
        for path in sorted((ROOT / folder).glob("*.py")):
            assert f"[{path.name}]({path.name})" in readme, (folder, path.name)
