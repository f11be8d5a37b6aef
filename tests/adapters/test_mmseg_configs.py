"""Every segmentation config loads and builds its model with the recipe's settings; the recipe's train and test-time
pipelines; README and metafile list every config and carry the paper's numbers, and only those. (Optimizer groups:
test_recipe_optimizers.py; schedules: test_schedules.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "segmentation" / "mmseg"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))

# Heo et al., ECCV 2024 (arXiv 2403.13298v2): Table 3 (ViT-UperNet, single-scale / multi-scale mIoU) and Table 4
# (Swin-Mask2Former, one mIoU per model)
PAPER_UPERNET = {
    "b16-ape": (47.7, 48.4), "b16-axial": (49.0, 49.9), "b16-mixed": (49.6, 50.7), "b16-mixed-ape": (50.0, 50.9),
    "l16-ape": (50.8, 51.6), "l16-axial": (51.8, 52.6), "l16-mixed": (51.5, 52.3), "l16-mixed-ape": (52.0, 52.6),
}
PAPER_MASK2FORMER = {
    "s-p4-w7-rpb": 50.2, "s-p4-w7-axial": 50.4, "s-p4-w7-mixed": 51.1, "s-p4-w7-mixed-rpb": 50.9,
    "b-p4-w7-rpb": 51.5, "b-p4-w7-axial": 52.0, "b-p4-w7-mixed": 52.0, "b-p4-w7-mixed-rpb": 51.4,
}


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
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.env_cfg.cudnn_benchmark is False
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_cfg.max_iters == 160000
    if name.startswith("upernet"):
        assert model.backbone.cls_token is not None  # all-global backbone keeps the cls token through the blocks
        assert all(b.window_size == 0 for b in model.backbone.blocks)  # no windows: window padding does not arise
        assert cfg.model.test_cfg == dict(mode="slide", crop_size=(512, 512), stride=(341, 341))
        assert cfg.optim_wrapper.paramwise_cfg.rule == "beit"
        assert cfg.optim_wrapper.paramwise_cfg.num_layers == backbone.depth
        assert "clip_grad" not in cfg.optim_wrapper
        assert len(backbone.out_indices) == 4 and backbone.out_indices[-1] == backbone.depth - 1
        assert cfg.randomness == dict(seed=0, deterministic=False, diff_rank_seed=False)  # BEiT v2: --seed 0
        if "-ape_" in name:  # resized once to the 512 crops' grid when loaded, then learned there (BEiT / mmseg)
            assert model.backbone.ape_grid == (32, 32) and model.backbone.pos_embed.shape[1] == 32 * 32
            assert model.backbone.ape_antialias is False
    else:
        assert type(model.decode_head.pixel_decoder).__name__ == "FP32MSDeformAttnPixelDecoder"
        assert model.backbone.window_padding == "zero"  # Mask2Former's Swin: padded tokens attend, shift always
        assert cfg.tta_model.type == "ProbabilityAverageSegTTAModel"
        assert cfg.train_pipeline[3] == dict(type="RandomCrop", crop_size=(512, 512), cat_max_ratio=1.0)
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)
        assert cfg.optim_wrapper.paramwise_cfg.rule == "mask2former"
        assert cfg.randomness == dict(seed=None, diff_rank_seed=True)  # detectron2 SEED = -1


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


def test_paper_numbers_in_readme_and_metafile():
    """Every number of the paper's Tables 3-4 beside its config (README row and metafile), marked as the paper's;
    no number for a config the paper does not report."""
    import re

    import yaml

    readme = (CONFIG_DIR / "README.md").read_text()
    meta = {Path(m["Config"]).name: m for m in yaml.safe_load((CONFIG_DIR / "metafile.yml").read_text())["Models"]}
    for name in CONFIGS:
        row = next(line for line in readme.splitlines() if line.startswith("|") and f"[{name}]({name})" in line)
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        results = meta[name].get("Results")
        if name.startswith("upernet"):
            key = name.removeprefix("upernet_ropevit-").removesuffix("_8xb2-amp-160k_ade20k-512x512.py")
            expected, paper_cells = PAPER_UPERNET.get(key), cells[-2:]
            metrics = None if expected is None else {"mIoU (paper)": expected[0], "mIoU(ms+flip) (paper)": expected[1]}
            shown = None if expected is None else [f"{v:.1f}" for v in expected]
        else:
            key = name.removeprefix("mask2former_ropeswin-").removesuffix("_8xb2-amp-160k_ade20k-512x512.py")
            expected, paper_cells = PAPER_MASK2FORMER.get(key), cells[-1:]
            metrics = None if expected is None else {"mIoU (paper)": expected}
            shown = None if expected is None else [f"{expected:.1f}"]
        if expected is None:
            assert not any(re.search(r"\d", c) for c in paper_cells), (name, paper_cells)
            assert results is None, name
        else:
            assert paper_cells == shown, (name, paper_cells)
            (result,) = results
            assert result["Metrics"] == metrics
            assert "paper" in result["Source"] and "not a result of this toolkit" in result["Source"]


def test_mask2former_train_crops_are_padded_with_grey_128(tmp_path):
    """Mask2Former's semantic mapper pads a smaller crop to 512 x 512 with 128 before normalisation, labels 255."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from PIL import Image

    import ropevit_dense.adapters.mmseg  # noqa: F401

    cfg = _load("mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py")
    init_default_scope("mmseg")
    img, seg = tmp_path / "a.jpg", tmp_path / "a.png"
    Image.fromarray(np.full((200, 300, 3), 40, np.uint8)).save(img)
    Image.fromarray(np.full((200, 300), 3, np.uint8)).save(seg)
    pipeline = [t for t in cfg.train_pipeline if t["type"] not in ("RandomChoiceResize", "PhotoMetricDistortion")]
    out = Compose(pipeline)(dict(img_path=str(img), seg_map_path=str(seg), reduce_zero_label=True, seg_fields=[]))
    image, label = out["inputs"], out["data_samples"].gt_sem_seg.data
    assert image.shape == (3, 512, 512) and label.shape == (1, 512, 512)
    assert (image[:, 200:, :] == 128).all() and (image[:, :, 300:] == 128).all()
    assert (label[:, 200:, :] == 255).all() and (label[:, :200, :300] == 2).all()


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
