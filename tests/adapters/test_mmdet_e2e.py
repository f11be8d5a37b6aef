"""End to end through the mim command line on a generated COCO dataset: train, checkpoint, test, resume."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "detection" / "mmdet" / "tiny" / "dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py"


def _data_options(root: Path) -> list[str]:
    r = f"{root}/"
    return [f"train_dataloader.dataset.data_root={r}", f"val_dataloader.dataset.data_root={r}",
            f"test_dataloader.dataset.data_root={r}", f"val_evaluator.ann_file={r}annotations/instances_val.json",
            f"test_evaluator.ann_file={r}annotations/instances_val.json"]


def test_mim_train_test_resume(tiny_coco, tmp_path, mim):
    work = tmp_path / "work"
    common = ["train_dataloader.batch_size=2", "default_hooks.logger.interval=1",
              "default_hooks.checkpoint.interval=2", *_data_options(tiny_coco)]
    out = mim("train", "mmdet", str(TINY), "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=4",
              "train_cfg.val_interval=100", *common, cwd=tmp_path)
    assert "Iter(train) [4/4]" in out
    ckpt = work / "iter_4.pth"
    assert ckpt.exists()

    out = mim("test", "mmdet", str(TINY), "--checkpoint", str(ckpt), "--work-dir", str(tmp_path / "test"),
              "--cfg-options", *_data_options(tiny_coco), cwd=tmp_path)
    assert re.search(r"coco/bbox_mAP: \d\.\d+", out), out[-2000:]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out

    out = mim("train", "mmdet", str(TINY), "--work-dir", str(work), "--resume", "--cfg-options",
              "train_cfg.max_iters=6", "train_cfg.val_interval=100", *common, cwd=tmp_path)
    assert "resumed epoch: 0, iter: 4" in out, out[-3000:]
    assert "Iter(train) [5/6]" in out and "Iter(train) [1/6]" not in out
    from ropevit_dense.checkpoints import load_file

    assert load_file(work / "iter_6.pth")["meta"]["iter"] == 6


def test_naver_checkpoint_as_init_cfg_loads_every_backbone_key(tmp_path):
    """A naver-format file (``{'model': ...}``, flat ``freqs``) given as init_cfg fills the whole DINO backbone."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401
    from ropevit_dense import RoPEViT

    cfg = Config.fromfile(str(TINY))
    kw = {k: cfg.model.backbone[k] for k in ("embed_dim", "depth", "num_heads")}
    torch.manual_seed(1)
    src = RoPEViT(**kw, rope_type="mixed")  # all-global classifier layout, with a cls token
    sd = {k: v for k, v in src.state_dict().items() if ".attn.rope.freqs" not in k}
    sd["freqs"] = torch.stack([b.attn.rope.freqs.detach() for b in src.blocks], 1).reshape(2, kw["depth"], -1)
    sd["freqs_t_x"] = sd["freqs_t_y"] = torch.zeros(196)
    sd["norm.weight"], sd["norm.bias"] = torch.ones(kw["embed_dim"]), torch.zeros(kw["embed_dim"])
    sd["head.weight"], sd["head.bias"] = torch.zeros(1000, kw["embed_dim"]), torch.zeros(1000)
    path = tmp_path / "pytorch_model.bin"
    torch.save({"model": sd}, path)

    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(path))  # strict by default
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    model.init_weights()
    got = model.backbone.state_dict()
    assert set(got) == set(src.state_dict()) - {"cls_token"}  # windowed layout: no cls token
    for k, v in got.items():
        torch.testing.assert_close(v, src.state_dict()[k], msg=k)


def test_bad_init_cfg_is_named():
    from mmdet.registry import MODELS

    import ropevit_dense.adapters.mmdet  # noqa: F401

    with pytest.raises(ValueError, match="supports init_cfg=dict\\(type='Pretrained'"):
        MODELS.build(dict(type="RoPEViT", embed_dim=64, depth=2, num_heads=4, init_cfg=dict(type="Kaiming")))


def test_recipe_optimizer_settings():
    """The detection schedule: backbone and pyramid lr x0.1, no decay on torch norms and RoPE freqs; APE and pyramid
    norms decay (detrex)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401

    cfg = Config.fromfile(str(ROOT / "configs/detection/mmdet/dino-4scale_ropevit-s16-mixed-ape_8xb2-90k_coco.py"))
    cfg.model.backbone.update(depth=2, global_block_indexes=(1,), init_cfg=None)
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    groups = {id(g["params"][0]): g for g in build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups}
    named = dict(model.named_parameters())

    def group(name):
        return groups[id(named[name])]

    assert group("backbone.blocks.0.attn.qkv.weight")["lr"] == pytest.approx(1e-5)
    assert group("backbone.blocks.0.attn.qkv.weight")["weight_decay"] == pytest.approx(1e-4)
    for name in ("backbone.blocks.0.norm1.weight", "backbone.blocks.1.attn.rope.freqs"):
        assert group(name)["lr"] == pytest.approx(1e-5) and group(name)["weight_decay"] == 0.0, name
    # detrex: pos_embed and the pyramid's channel-first LayerNorms decay; the pyramid trains with the backbone (x0.1)
    for name in ("backbone.pos_embed", "neck.0.levels.0.lateral_norm.weight"):
        assert group(name)["lr"] == pytest.approx(1e-5) and group(name)["weight_decay"] == pytest.approx(1e-4), name
    assert group("bbox_head.cls_branches.0.weight")["lr"] == pytest.approx(1e-4)


def test_layer_decay_constructor_scales_each_block():
    from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401

    cfg = Config.fromfile(str(TINY))
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    paramwise = dict(cfg.optim_wrapper.paramwise_cfg, layer_decay_rate=0.5, num_layers=4,
                     custom_keys={"backbone": dict(lr_mult=0.1), "rope.freqs": dict(lr_mult=0.1, decay_mult=0.0)})
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="RoPEOptimWrapperConstructor", optim_wrapper_cfg=dict(
            type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1)), paramwise_cfg=paramwise))
    groups = {id(g["params"][0]): g for g in ctor(model).optimizer.param_groups}
    named = dict(model.named_parameters())

    def lr(name):
        return groups[id(named[name])]["lr"]

    assert lr("backbone.patch_embed.proj.weight") == pytest.approx(0.1 * 0.5 ** 5)
    for i in range(4):
        assert lr(f"backbone.blocks.{i}.attn.qkv.weight") == pytest.approx(0.1 * 0.5 ** (4 - i))
        assert lr(f"backbone.blocks.{i}.attn.rope.freqs") == pytest.approx(0.1 * 0.5 ** (4 - i))
        assert groups[id(named[f"backbone.blocks.{i}.attn.rope.freqs"])]["weight_decay"] == 0.0
    assert lr("bbox_head.cls_branches.0.weight") == pytest.approx(1.0)
    assert groups[id(named["backbone.blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert groups[id(named["backbone.blocks.0.attn.qkv.weight"])]["weight_decay"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="layer_decay_rate needs num_layers"):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type="RoPEOptimWrapperConstructor", optim_wrapper_cfg=dict(
            type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0)), paramwise_cfg=dict(layer_decay_rate=0.7)))


@pytest.mark.slow
def test_tiny_rope_dino_learns(tmp_path, mim):
    """Learning, not just running: the tiny RoPE-Mixed DINO overfits 8 generated images to box AP >= 0.5.

    About 6 minutes on 2 CPU cores (600 iterations of 4 images); run with --run-slow.
    """
    from ropevit_dense.data import make_coco

    root = tmp_path / "coco"
    make_coco(root, num_images=8, splits=("train",), seed=7)
    r = f"{root}/"
    train_ann = f"{r}annotations/instances_train.json"
    out = mim("train", "mmdet", str(TINY), "--work-dir", str(tmp_path / "work"), "--cfg-options",
               "train_cfg.max_iters=600", "train_cfg.val_interval=600", "default_hooks.checkpoint.interval=600",
               "param_scheduler.0.milestones=[500]", f"train_dataloader.dataset.data_root={r}",
               f"val_dataloader.dataset.data_root={r}",
               "val_dataloader.dataset.ann_file=annotations/instances_train.json",
               "val_dataloader.dataset.data_prefix.img=train/", f"val_evaluator.ann_file={train_ann}", cwd=tmp_path)
    ap = float(re.findall(r"coco/bbox_mAP: (\d\.\d+)", out)[-1])
    assert ap >= 0.5, f"box AP on the training images after 600 iterations: {ap}"
