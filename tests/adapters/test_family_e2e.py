"""A tiny DINOv3 and a tiny EVA-02 DINO end to end through the mim command line on a generated COCO dataset: train a
few iterations, checkpoint, test; and an official-layout DINOv3 file as init_cfg fills the whole backbone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "dinov3": ROOT / "configs/detection/mmdet/dinov3/tiny/dino-4scale_dinov3-tiny-vitdet_1xb4-lsj-800i_tinycoco.py",
    "eva02": ROOT / "configs/detection/mmdet/eva02/tiny/dino-4scale_eva02-tiny-vitdet_1xb4-lsj-800i_tinycoco.py",
}


def _data_options(root: Path) -> list[str]:
    r = f"{root}/"
    return [f"train_dataloader.dataset.data_root={r}", f"val_dataloader.dataset.data_root={r}",
            f"test_dataloader.dataset.data_root={r}", f"val_evaluator.ann_file={r}annotations/instances_val.json",
            f"test_evaluator.ann_file={r}annotations/instances_val.json"]


@pytest.mark.parametrize("family", list(TINY))
def test_mim_train_and_test(family, tiny_coco, tmp_path, mim):
    config = TINY[family]
    work = tmp_path / "work"
    out = mim("train", "mmdet", str(config), "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=3",
              "train_cfg.val_interval=100", "train_dataloader.batch_size=2", "default_hooks.logger.interval=1",
              "default_hooks.checkpoint.interval=3", *_data_options(tiny_coco), cwd=tmp_path)
    assert "Iter(train) [3/3]" in out
    assert re.search(r"loss: \d+\.\d+", out)
    ckpt = work / "iter_3.pth"
    assert ckpt.exists()
    out = mim("test", "mmdet", str(config), "--checkpoint", str(ckpt), "--work-dir", str(tmp_path / "test"),
              "--cfg-options", "test_dataloader.dataset.indices=3", *_data_options(tiny_coco), cwd=tmp_path)
    assert re.search(r"coco/bbox_mAP: \d\.\d+", out), out[-2000:]
    from ropevit_dense.checkpoints import load_file

    trained = load_file(ckpt)["state_dict"]
    # the tiny detectors train their family's backbone: registers dropped (ViTDet layout), SwiGLU + sub-LN for EVA-02
    assert "backbone.register_tokens" not in trained and "backbone.cls_token" not in trained
    if family == "eva02":
        assert "backbone.blocks.0.mlp.norm.weight" in trained and "backbone.pos_embed" in trained
    else:
        assert "backbone.norm.weight" in trained and "backbone.blocks.0.gamma_1" in trained


def test_official_dinov3_file_as_init_cfg_loads_every_backbone_key(tmp_path):
    """A facebookresearch/dinov3-layout file (storage tokens, rotate-half q / k, bf16 periods) initialises the
    windowed detector backbone: every key is loaded, the q / k rows permuted, cls and registers dropped."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401
    from ropevit_dense import RoPEViT
    from ropevit_dense.checkpoints.families import rotate_half_to_interleaved

    cfg = Config.fromfile(str(TINY["dinov3"]))
    kw = {k: cfg.model.backbone[k] for k in ("embed_dim", "depth", "num_heads")}
    torch.manual_seed(2)
    src = RoPEViT(family="dinov3", **kw, init_values=0.5)  # all-global classifier layout: cls + 4 registers
    official = {}
    for k, v in src.state_dict().items():
        official[k.replace("register_tokens", "storage_tokens").replace("gamma_1", "ls1.gamma")
                 .replace("gamma_2", "ls2.gamma")] = v
    head_dim = kw["embed_dim"] // kw["num_heads"]
    official["rope_embed.periods"] = (100.0 ** (4 * torch.arange(head_dim // 4) / head_dim)).to(torch.bfloat16)
    official["mask_token"] = torch.zeros(1, kw["embed_dim"])
    path = tmp_path / "dinov3_tiny_pretrain_lvd1689m.pth"
    torch.save(official, path)

    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(path))  # strict by default
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    model.init_weights()
    got = model.backbone.state_dict()
    assert set(got) == set(src.state_dict()) - {"cls_token", "register_tokens"}
    qkv = src.state_dict()["blocks.0.attn.qkv.weight"]
    q, k, v = qkv.chunk(3)
    expected = torch.cat((rotate_half_to_interleaved(q, head_dim), rotate_half_to_interleaved(k, head_dim), v))
    torch.testing.assert_close(got["blocks.0.attn.qkv.weight"], expected)
    torch.testing.assert_close(got["blocks.1.mlp.fc2.weight"], src.state_dict()["blocks.1.mlp.fc2.weight"])
