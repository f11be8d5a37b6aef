"""Whole models at odd input sizes: DINO with RoPE-ViT and RoPE-Swin, UperNet (RoPE-ViT), Mask2Former (RoPE-Swin),
tiny widths and depths in the shipped model structure, through the shipped test pipelines and the real data
preprocessors (``mmdet.apis.inference_detector`` / ``mmseg.apis.inference_model``).

Boxes must lie inside the original image and label maps must have its size. Two config changes make the extreme
strips work (they crash deep inside otherwise, pinned by the strict xfails below):

* DINO: ``model.data_preprocessor.type='RoPEDetDataPreprocessor', min_size=(224, 224)`` pads a batch up to 224
  pixels per side, so that the encoder has at least ``num_queries`` (900) tokens to pick from;
* UperNet: ``model.data_preprocessor.test_cfg=dict(size=(32, 32))`` (mmseg's own test-time padding, a minimum
  size here, so the other sizes are untouched) keeps every level of the stride-4..32 pyramid at least one pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from pathlib import Path  # noqa: E402

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DET_DIR, SEG_DIR = ROOT / "configs/detection/mmdet", ROOT / "configs/segmentation/mmseg"
# the default run: upscaling from one pixel and the two strips that need the guards; the rest is marked slow
SIZES = [(1, 1), (16, 4096), (4096, 16)]
SLOW_SIZES = [(33, 47), (64, 2048), (2048, 64), (4000, 6000)]
MODELS = ("dino_ropevit", "dino_ropeswin", "upernet_ropevit", "mask2former_ropeswin")
DINO_GUARD = dict(type="RoPEDetDataPreprocessor", min_size=(224, 224))
UPERNET_GUARD = dict(size=(32, 32))


def _config(name: str, *, guard: bool = True) -> Config:
    """The shipped config of ``name`` with tiny widths and depths (same classes, pipelines and test settings)."""
    if name == "dino_ropevit":
        cfg = Config.fromfile(str(DET_DIR / "dino-4scale_ropevit-s16-mixed_8xb2-90k_coco.py"))
        cfg.merge_from_dict({"model.backbone.embed_dim": 64, "model.backbone.depth": 2, "model.backbone.num_heads": 2,
                             "model.backbone.global_block_indexes": (1,), "model.neck.0.in_channels": 64})
    elif name == "dino_ropeswin":
        cfg = Config.fromfile(str(DET_DIR / "dino-4scale_ropeswin-t-p4-w7-mixed_8xb2-90k_coco.py"))
        cfg.merge_from_dict({"model.backbone.embed_dim": 32, "model.backbone.depths": (1, 1, 1, 1),
                             "model.backbone.num_heads": (1, 2, 4, 8), "model.neck.in_channels": [64, 128, 256]})
    elif name == "upernet_ropevit":
        cfg = Config.fromfile(str(SEG_DIR / "upernet_ropevit-s16-mixed_8xb2-amp-160k_ade20k-512x512.py"))
        cfg.merge_from_dict({"model.backbone.embed_dim": 64, "model.backbone.depth": 4, "model.backbone.num_heads": 2,
                             "model.backbone.out_indices": (0, 1, 2, 3), "model.neck.embed_dim": 64,
                             "model.decode_head.in_channels": [64] * 4, "model.decode_head.channels": 64,
                             "model.auxiliary_head.in_channels": 64, "model.auxiliary_head.channels": 32})
    else:
        cfg = Config.fromfile(str(SEG_DIR / "mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py"))
        cfg.merge_from_dict({"model.backbone.embed_dim": 32, "model.backbone.depths": (1, 1, 1, 1),
                             "model.backbone.num_heads": (1, 2, 4, 8),
                             "model.decode_head.in_channels": [32, 64, 128, 256], "model.decode_head.num_queries": 20,
                             "model.decode_head.pixel_decoder.encoder.num_layers": 1,
                             "model.decode_head.transformer_decoder.num_layers": 1})
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.drop_path_rate = 0.0
    if name.startswith("dino"):
        cfg.merge_from_dict({"model.encoder.num_layers": 1, "model.decoder.num_layers": 1})
        if guard:
            cfg.model.data_preprocessor.update(DINO_GUARD)
    elif name == "upernet_ropevit" and guard:
        cfg.model.data_preprocessor.test_cfg = UPERNET_GUARD
    return cfg


def _build(name: str, *, guard: bool = True, raw: bool = False):
    """(model, inference function); ``raw`` keeps the image at its own size (the test Resize scales by 1)."""
    cfg = _config(name, guard=guard)
    if raw:
        pipeline = [dict(type="Resize", scale_factor=1.0) if t["type"] == "Resize" else t
                    for t in cfg.test_dataloader.dataset.pipeline]
        cfg.test_dataloader.dataset.pipeline = cfg.test_pipeline = pipeline
    torch.manual_seed(0)
    if name.startswith("dino"):
        from mmdet.apis import inference_detector, init_detector

        import ropevit_dense.adapters.mmdet  # noqa: F401
        import ropevit_dense.adapters.mmdet_guards  # noqa: F401

        init_default_scope("mmdet")
        return init_detector(cfg, None, device="cpu").eval(), inference_detector, "mmdet"
    import mmdet.models  # noqa: F401 - Mask2Former's head
    from mmseg.apis import inference_model, init_model

    import ropevit_dense.adapters.mmseg  # noqa: F401

    init_default_scope("mmseg")
    return init_model(cfg, None, device="cpu").eval(), inference_model, "mmseg"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd_sizes")

    def make(h: int, w: int) -> str:
        path = root / f"{h}x{w}.jpg"
        if not path.exists():
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 128)], -1)
            Image.fromarray(rgb.astype(np.uint8)).save(path, quality=90)
        return str(path)

    return make


_cache: dict = {}


def _model(name: str, **kwargs):
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _cache:
        _cache[key] = _build(name, **kwargs)
    return _cache[key]


def _check(name: str, result, h: int, w: int) -> None:
    if name.startswith("dino"):
        boxes, scores, labels = (result.pred_instances.bboxes, result.pred_instances.scores,
                                 result.pred_instances.labels)
        assert boxes.shape == (300, 4) and torch.isfinite(boxes).all() and torch.isfinite(scores).all()
        assert tuple(result.ori_shape) == (h, w)
        eps = 1e-3
        assert (boxes[:, 0::2] >= -eps).all() and (boxes[:, 0::2] <= w + eps).all(), boxes[:, 0::2].aminmax()
        assert (boxes[:, 1::2] >= -eps).all() and (boxes[:, 1::2] <= h + eps).all(), boxes[:, 1::2].aminmax()
        assert (boxes[:, 2:] >= boxes[:, :2] - eps).all()
        assert ((labels >= 0) & (labels < 80)).all()
    else:
        seg = result.pred_sem_seg.data
        assert tuple(seg.shape) == (1, h, w)
        assert int(seg.min()) >= 0 and int(seg.max()) < 150


def _infer(name: str, path: str, **kwargs):
    model, infer, scope = _model(name, **kwargs)
    init_default_scope(scope)
    with torch.no_grad():
        return infer(model, path)


def _ids(sizes):
    return [f"{h}x{w}" for h, w in sizes]


@pytest.mark.parametrize("size", SIZES + [pytest.param(s, marks=pytest.mark.slow) for s in SLOW_SIZES],
                         ids=_ids(SIZES + SLOW_SIZES))
@pytest.mark.parametrize("name", MODELS)
def test_shipped_test_pipeline(name, size, images):
    """Slow sizes: 33 x 47 is upscaled like 1 x 1; the 32:1 strips are milder than the 256:1 ones; the segmentors
    resize 150-class scores back to 4000 x 6000 at full resolution (mmseg does, 14 GB of float32)."""
    h, w = size
    _check(name, _infer(name, images(h, w)), h, w)


@pytest.mark.parametrize("size", [(1, 1), (33, 47), pytest.param((2048, 64), marks=pytest.mark.slow)],
                         ids=["1x1", "33x47", "2048x64"])
@pytest.mark.parametrize("name", MODELS)
def test_the_model_sees_the_odd_size_itself(name, size, images):
    """No resizing: the backbone, pyramid and heads get the odd size as it is (user pipelines without Resize)."""
    h, w = size
    _check(name, _infer(name, images(h, w), raw=True), h, w)


@pytest.mark.parametrize("name", [
    pytest.param("dino_ropevit", marks=pytest.mark.xfail(strict=True, raises=RuntimeError, reason=(
        "without RoPEDetDataPreprocessor(min_size): the 5 x 1333 input gives a 1 x 84 token grid, and the simple "
        "pyramid's 2x2 max-pool fails: 'Output size is too small'"))),
    pytest.param("dino_ropeswin", marks=pytest.mark.xfail(strict=True, raises=RuntimeError, reason=(
        "without RoPEDetDataPreprocessor(min_size): 314 encoder tokens for 900 queries, mmdet's DINO fails in "
        "torch.topk: 'selected index k out of range'"))),
    pytest.param("upernet_ropevit", marks=pytest.mark.xfail(strict=True, raises=RuntimeError, reason=(
        "without test_cfg=dict(size=(32, 32)): an 8-pixel-high slide window gives a 1-token-high grid that "
        "mmseg's Feature2Pyramid max-pools to nothing: 'Output size is too small'"))),
    "mask2former_ropeswin",  # its shipped test_cfg=dict(size_divisor=32) already pads
])
def test_extreme_strip_without_the_size_guards(name, images):
    _check(name, _infer(name, images(16, 4096), guard=False), 16, 4096)


def test_min_size_argument_is_checked():
    from ropevit_dense.adapters.mmdet_guards import RoPEDetDataPreprocessor

    with pytest.raises(ValueError, match="min_size must be"):
        RoPEDetDataPreprocessor(min_size=(224,))
    assert RoPEDetDataPreprocessor(min_size=(224, 200)).min_size == (224, 200)
