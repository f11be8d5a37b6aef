"""This package's own detectron2 checkpoints as pretrained weights: a whole detector written by detectron2's
``DetectionCheckpointer`` (ViTDet: backbone under ``backbone.net.``; RoPE-Swin FPN: ``backbone.bottom_up.``) loads
through the backbones' ``pretrained=`` and through ``tools/convert_checkpoint.py``, in ``.pth`` and as the ``.pkl``
the converter writes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "detection" / "detectron2" / "tiny" / "mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py"
SKIP_REASON = ("detectron2 is not installed (it is not on PyPI): install it from its source, "
               "see configs/detection/detectron2/README.md")
SWIN = ["EMBED_DIM", 16, "DEPTHS", [1, 1, 2, 1], "NUM_HEADS", [1, 2, 4, 8], "ROPE_TYPE", "mixed"]


@pytest.fixture(scope="module")
def adapter():
    pytest.importorskip("detectron2", reason=SKIP_REASON)
    from ropevit_dense.adapters import detectron2 as module

    return module


@pytest.fixture(scope="module")
def conv():
    spec = importlib.util.spec_from_file_location("tool_convert_checkpoint", REPO / "tools" / "convert_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Weights away from their initialisation (LayerScale 1, zero biases), so a wrong load cannot pass."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _vitdet_checkpoint(folder: Path):
    """The tiny ViTDet Mask R-CNN, saved by detectron2's own DetectionCheckpointer as the trainer does."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    folder.mkdir(parents=True, exist_ok=True)
    cfg = LazyConfig.load(str(TINY_CONFIG))
    torch.manual_seed(0)
    model = _perturb(instantiate(cfg.model))
    DetectionCheckpointer(model, save_dir=str(folder)).save("model_final", iteration=299)
    return cfg, model, folder / "model_final.pth"


def _swin_fpn_checkpoint(adapter, folder: Path):
    """A detector with a RoPE-Swin FPN backbone (yacs build function), saved by DetectionCheckpointer."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    folder.mkdir(parents=True, exist_ok=True)
    cfg = get_cfg()
    adapter.add_ropevit_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_ropeswin_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ROPESWIN.merge_from_list(SWIN)
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.backbone = build_backbone(cfg)
    model.head = torch.nn.Linear(256, 3)
    _perturb(model)
    DetectionCheckpointer(model, save_dir=str(folder)).save("model_0000099", iteration=99)
    return model, folder / "model_0000099.pth"


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    ref = b.state_dict()
    assert set(a.state_dict()) == set(ref)
    for k, v in a.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_vitdet_detector_checkpoint_is_a_pretrained_backbone(adapter, tmp_path):
    from detectron2.config import instantiate

    cfg, model, path = _vitdet_checkpoint(tmp_path)
    assert any(k.startswith("backbone.net.blocks.") for k in torch.load(path, weights_only=True)["model"])
    kwargs = {k: v for k, v in cfg.model.backbone.net.items() if k not in ("_target_", "pretrained")}
    net = adapter.RoPEViTBackbone(**kwargs, pretrained=str(path))  # strict by default
    assert net.load_report.ok and net.load_report.architecture == "ViT"
    _assert_same(net, model.backbone.net)
    # the same through a LazyConfig, as a user sets it
    cfg.model.backbone.net.pretrained = str(path)
    _assert_same(instantiate(cfg.model.backbone).net, model.backbone.net)


def test_swin_fpn_detector_checkpoint_is_a_pretrained_backbone(adapter, tmp_path):
    model, path = _swin_fpn_checkpoint(adapter, tmp_path)
    assert any(k.startswith("backbone.bottom_up.layers.") for k in torch.load(path, weights_only=True)["model"])
    swin = adapter.RoPESwinBackbone(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), rope_type="mixed",
                                    pretrained=str(path))
    assert swin.load_report.ok and swin.load_report.architecture == "Swin"
    _assert_same(swin, model.backbone.bottom_up)


def test_converter_turns_own_detector_checkpoints_into_backbone_files_and_back(adapter, conv, tmp_path, capsys):
    from ropevit_dense import RoPESwin, RoPEViT, load_pretrained

    cfg, vitdet, vit_path = _vitdet_checkpoint(tmp_path / "vit")
    swin_model, swin_path = _swin_fpn_checkpoint(adapter, tmp_path / "swin")
    for path, family, source in ((vit_path, "vit", vitdet.backbone.net), (swin_path, "swin",
                                                                          swin_model.backbone.bottom_up)):
        ours, d2pkl, back = (tmp_path / f"{family}{suffix}" for suffix in (".pth", ".pkl", "_back.pth"))
        assert conv.main([str(path), str(ours), "--num-heads", "2" if family == "vit" else "1,2,4,8"]) == 0
        assert "backbone tensors of the" in capsys.readouterr().out  # pyramid / FPN and heads dropped
        assert conv.main([str(ours), str(d2pkl), "--format", "d2"]) == 0
        assert conv.main([str(d2pkl), str(back)]) == 0  # a .pkl input, read by the restricted unpickler
        kwargs = {"vit": dict(embed_dim=64, depth=2, num_heads=2, init_values=1.0, use_cls_token=False,
                              rope_type="mixed"),
                  "swin": dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), rope_type="mixed")}[family]
        for written in (ours, back):
            model = (RoPEViT if family == "vit" else RoPESwin)(**kwargs)
            assert load_pretrained(model, written).ok
            for k, v in model.state_dict().items():
                assert torch.equal(v, source.state_dict()[k]), (written.name, k)

    # the detectron2 .pkl of the ViT as pretrained= of the ViTDet backbone, and as a whole-model checkpoint
    net_kwargs = {k: v for k, v in cfg.model.backbone.net.items() if k not in ("_target_", "pretrained")}
    net = adapter.RoPEViTBackbone(**net_kwargs, pretrained=str(tmp_path / "vit.pkl"))
    _assert_same(net, vitdet.backbone.net)
    from detectron2.config import instantiate

    cfg.model.backbone.net.pretrained = None
    fresh = instantiate(cfg.model)
    adapter.SafeDetectionCheckpointer(fresh).load(str(tmp_path / "vit.pkl"))
    _assert_same(fresh.backbone.net, vitdet.backbone.net)
