"""Every segmentation config loads and builds its model; the recipe's optimizer and test-time pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "segmentation" / "mmseg"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))


def _load(name: str):
    from mmengine.config import Config

    return Config.fromfile(str(CONFIG_DIR / name))


def test_the_config_grid_is_complete():
    vit = {f"upernet_ropevit-{s}16-{p}_8xb2-amp-160k_ade20k-512x512.py" for s in "sbl"
           for p in ("ape", "axial", "mixed", "mixed-ape")}
    swin = {f"mask2former_ropeswin-{s}-p4-w7-{p}_8xb2-amp-160k_ade20k-512x512.py" for s in "tsb"
            for p in ("rpb", "axial", "mixed", "mixed-rpb")}
    assert vit | swin <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model(name):
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from mmseg.registry import MODELS

    cfg = _load(name)
    import_modules_from_strings(**cfg.custom_imports)
    assert "ropevit_dense.adapters.mmseg" in cfg.custom_imports["imports"]
    backbone = cfg.model.backbone
    assert backbone.init_cfg["type"] == "Pretrained"
    assert backbone.init_cfg["checkpoint"].startswith(("hf://naver-ai/", "https://github.com/SwinTransformer/"))
    backbone.init_cfg = None
    if name.startswith("mask2former"):  # the 9-layer head at full width is slow to build; shrink the decoder
        cfg.model.decode_head.transformer_decoder.num_layers = 1
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ in ("MMRoPEViT", "MMRoPESwin")
    assert model.backbone.rope_type == backbone.get("rope_type")
    if "-ape_" in name:
        assert model.backbone.pos_embed is not None
    if "rpb_" in name:
        assert model.backbone.layers[0].blocks[0].attn.relative_position_bias_table is not None
    if name.startswith("upernet"):
        assert model.backbone.cls_token is not None  # all-global backbone keeps the cls token through the blocks
        assert cfg.model.test_cfg == dict(mode="slide", crop_size=(512, 512), stride=(341, 341))
        assert cfg.optim_wrapper.type == "AmpOptimWrapper"
        assert cfg.optim_wrapper.paramwise_cfg.num_layers == backbone.depth
        assert len(backbone.out_indices) == 4 and backbone.out_indices[-1] == backbone.depth - 1
    else:
        assert cfg.tta_model.type == "ProbabilityAverageSegTTAModel"
        assert cfg.train_pipeline[3] == dict(type="RandomCrop", crop_size=(512, 512), cat_max_ratio=1.0)
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)


def test_metafile_and_readme_list_every_config():
    import yaml

    meta = yaml.safe_load((CONFIG_DIR / "metafile.yml").read_text())
    listed = {Path(m["Config"]).name for m in meta["Models"]}
    assert listed == set(CONFIGS)
    for m in meta["Models"]:
        assert (ROOT / m["Config"]).exists()
    index = yaml.safe_load((ROOT / "model-index.yml").read_text())
    assert "configs/segmentation/mmseg/metafile.yml" in index["Import"]
    readme = (CONFIG_DIR / "README.md").read_text()
    assert all(f"[{name}]({name})" in readme for name in CONFIGS)


def _param_groups(name: str):
    """``group(parameter name)`` -> its optimizer parameter group, from the config's real optim_wrapper settings."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from mmseg.registry import MODELS

    cfg = _load(name)
    import_modules_from_strings(**cfg.custom_imports)
    cfg.model.backbone.init_cfg = None
    if name.startswith("mask2former"):
        cfg.model.decode_head.transformer_decoder.num_layers = 1
    cfg.optim_wrapper.type = "OptimWrapper"  # AmpOptimWrapper needs a GPU; the parameter groups are the same
    cfg.optim_wrapper.pop("loss_scale")
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    groups = {id(g["params"][0]): g for g in build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups}
    named = dict(model.named_parameters())
    return lambda param: groups[id(named[param])]


def test_upernet_recipe_optimizer_groups():
    """BEiT v2 ViT-B: lr 5e-5, layer decay 0.75 over 12 blocks, no weight decay on 1-D parameters or RoPE freqs."""
    group = _param_groups("upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py")
    lr = 5e-5
    assert group("backbone.patch_embed.proj.weight")["lr"] == pytest.approx(lr * 0.75 ** 13)
    assert group("backbone.cls_token")["weight_decay"] == 0.0
    for i in (0, 5, 11):
        scale = 0.75 ** (12 - i)
        for suffix in ("attn.qkv.weight", "attn.rope.freqs", "gamma_1", "norm1.weight", "attn.qkv.bias"):
            assert group(f"backbone.blocks.{i}.{suffix}")["lr"] == pytest.approx(lr * scale), suffix
        assert group(f"backbone.blocks.{i}.attn.qkv.weight")["weight_decay"] == pytest.approx(0.05)
        for suffix in ("attn.rope.freqs", "gamma_1", "gamma_2", "norm1.weight", "attn.qkv.bias"):
            assert group(f"backbone.blocks.{i}.{suffix}")["weight_decay"] == 0.0, suffix
    assert group("decode_head.conv_seg.weight")["lr"] == pytest.approx(lr)
    assert group("decode_head.conv_seg.weight")["weight_decay"] == pytest.approx(0.05)
    assert group("neck.upsample_4x.1.weight")["weight_decay"] == 0.0  # a BatchNorm


def test_mask2former_recipe_optimizer_groups():
    group = _param_groups("mask2former_ropeswin-t-p4-w7-mixed-rpb_8xb2-amp-160k_ade20k-512x512.py")
    blk = "backbone.layers.0.blocks.0"
    assert group(f"{blk}.attn.qkv.weight")["lr"] == pytest.approx(1e-5)
    assert group(f"{blk}.attn.qkv.weight")["weight_decay"] == pytest.approx(0.05)
    for name in (f"{blk}.norm1.weight", f"{blk}.attn.rope.freqs", f"{blk}.attn.relative_position_bias_table"):
        assert group(name)["lr"] == pytest.approx(1e-5) and group(name)["weight_decay"] == 0.0, name
    for name in ("decode_head.query_embed.weight", "decode_head.query_feat.weight", "decode_head.level_embed.weight"):
        assert group(name)["lr"] == pytest.approx(1e-4) and group(name)["weight_decay"] == 0.0, name


def _run_tta_pipeline(cfg, tmp_path, height, width):
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from PIL import Image

    import ropevit_dense.adapters.mmseg  # noqa: F401

    init_default_scope("mmseg")
    img, seg = tmp_path / "a.jpg", tmp_path / "a.png"
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(img)
    Image.fromarray(np.ones((height, width), np.uint8)).save(seg)
    out = Compose(cfg.tta_pipeline)(dict(img_path=str(img), seg_map_path=str(seg), reduce_zero_label=True,
                                          seg_fields=[]))
    return [tuple(s.img_shape) for s in out["data_samples"]], [s.flip for s in out["data_samples"]]


def test_upernet_tta_reproduces_setr_short_sides(tmp_path):
    """Short side max(512, 512 r) for r = 0.5 ... 1.75 with no long-side cap, each with and without flip."""
    shapes, flips = _run_tta_pipeline(_load("upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py"), tmp_path,
                                      300, 1200)
    assert sorted({min(s) for s in shapes}) == [512, 640, 768, 896]
    assert [min(s) for s in shapes[::2]] == [512, 512, 512, 640, 768, 896]
    assert max(max(s) for s in shapes) == 896 * 4  # a 1:4 image keeps its ratio: no cap on the long side
    assert flips == [False, True] * 6


def test_mask2former_tta_uses_absolute_short_sides_with_a_long_side_cap(tmp_path):
    cfg = _load("mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py")
    shapes, _ = _run_tta_pipeline(cfg, tmp_path, 300, 450)
    assert [min(s) for s in shapes[::2]] == [256, 384, 512, 640, 768, 896]
    shapes, _ = _run_tta_pipeline(cfg, tmp_path, 100, 1000)  # 1:10: the 3584 cap binds from short side 384 on
    assert min(shapes[0]) == 256 and len(set(shapes[2:])) == 1
    assert 3500 < max(shapes[-1]) <= 3584 and min(shapes[-1]) < 384


def test_probability_average_tta_averages_scores_without_softmax():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from ropevit_dense.adapters.mmseg import ProbabilityAverageSegTTAModel

    def view(scores):
        s = SegDataSample(metainfo=dict(img_path="x.jpg", ori_shape=(2, 2)))
        s.seg_logits = PixelData(data=scores)
        s.gt_sem_seg = PixelData(data=torch.zeros(1, 2, 2, dtype=torch.long))
        return s

    a = torch.tensor([[[0.9, 0.0], [0.0, 0.0]], [[0.8, 0.6], [0.0, 0.0]], [[0.3, 0.3], [1.0, 0.2]]])
    b = torch.tensor([[[0.2, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.0, 0.0]], [[0.9, 0.4], [0.0, 0.3]]])
    tta = ProbabilityAverageSegTTAModel.__new__(ProbabilityAverageSegTTAModel)
    (out,) = tta.merge_preds([[view(a), view(b)]])
    torch.testing.assert_close(out.seg_logits.data, (a + b) / 2)
    assert out.pred_sem_seg.data.tolist() == [[[1, 1], [2, 2]]]
    # a softmax of each view first (mmseg's SegTTAModel) would pick class 2 at the top-left pixel
    assert (a.softmax(0) + b.softmax(0)).argmax(0)[0, 0] == 2
    assert out.img_path == "x.jpg" and "gt_sem_seg" in out
