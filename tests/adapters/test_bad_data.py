"""Bad data meets a clear message: each planted defect either stops training before the first iteration with the
file and the problem, or trains on with a warning naming the file (the sample skipped or loaded correctly).

What mmdet 3.3 / mmseg 1.2 do without the guards is pinned by the ``stock`` tests, so a change of behaviour in
those frameworks shows up here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmcv.transforms import Compose, LoadImageFromFile  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from ropevit_dense.adapters.data_guards import BadSampleError, RoPEDataCheckHook, RoPELoadImageFromFile  # noqa: E402
from ropevit_dense.data import make_ade20k, make_coco  # noqa: E402
from ropevit_dense.data.defects import plant_ade20k_defects, plant_coco_defects  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DET = ROOT / "configs/detection/mmdet/tiny/dino-4scale_ropevit-tiny-mixed-guarded_1xb4-800i_tinycoco.py"
SEG = ROOT / "configs/segmentation/mmseg/tiny/upernet_ropevit-tiny-mixed-guarded_1xb4-400i_tinyade20k-64x64.py"
DET_ERRORS = {"missing-image", "truncated-image", "unreadable-image", "unknown-category", "size-mismatch"}
SEG_ERRORS = {"missing-label-map", "truncated-image", "label-size-mismatch", "label-map-not-single-channel"}


@pytest.fixture(scope="module")
def bad_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_coco")
    make_coco(root, num_images=12, splits=("train", "val"), seed=11)
    return root, {d.code: d.path for d in plant_coco_defects(root)}


@pytest.fixture(scope="module")
def bad_ade(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_ade")
    make_ade20k(root, num_images=12, splits=("training", "validation"), seed=11)
    planted = plant_ade20k_defects(root)
    return root, {(d.code, d.path) for d in planted}


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def about(self, code: str, path: Path) -> list[str]:
        return [m for m in self.lines if str(path) in m and code in m]


@pytest.fixture
def messages():
    """Everything logged through mmengine's current logger (where the guards warn)."""
    logger = MMLogger.get_current_instance()
    handler = _Messages()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _dataset(config: Path, root: Path, scope: str):
    cfg = Config.fromfile(str(config))
    __import__(cfg.custom_imports.imports[0])
    __import__(cfg.custom_imports.imports[1])
    init_default_scope(scope)
    from mmengine.registry import DATASETS

    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = f"{root}/" if scope == "mmdet" else str(root)
    return cfg, DATASETS.build(ds_cfg)


def _hook_on(dataset, **kwargs):
    logger = logging.getLogger("test_bad_data.hook")
    runner = SimpleNamespace(train_dataloader=SimpleNamespace(dataset=dataset), val_dataloader=None, logger=logger)
    RoPEDataCheckHook(**kwargs).before_train(runner)


# ---- detection ------------------------------------------------------------------------------------------------------
def test_det_preflight_stops_with_every_broken_file(bad_coco):
    root, planted = bad_coco
    _, dataset = _dataset(DET, root, "mmdet")
    with pytest.raises(BadSampleError) as exc:
        _hook_on(dataset)
    text = str(exc.value)
    assert "5 problem(s) in the data would crash or corrupt training" in text
    for code in DET_ERRORS:
        assert re.search(rf"{code}\s+{re.escape(str(planted[code]))}", text), (code, text)


def test_det_preflight_warns_naming_each_file(bad_coco, caplog):
    root, planted = bad_coco
    _, dataset = _dataset(DET, root, "mmdet")
    with caplog.at_level(logging.WARNING, logger="test_bad_data.hook"):
        _hook_on(dataset, errors="warn")
    for code, path in planted.items():
        assert any(code in r.getMessage() and str(path) in r.getMessage() for r in caplog.records), code


def test_det_loader_skips_or_loads_each_image_correctly(bad_coco, messages):
    """Train pipeline loader (on_error='skip'): None + a warning for unusable files; the right frame for the rest."""
    import json

    root, planted = bad_coco
    images = json.loads((root / "annotations" / "instances_train.json").read_text())["images"]
    by_path = {root / "train" / im["file_name"]: im for im in images}
    load = RoPELoadImageFromFile(on_error="skip")
    raising = RoPELoadImageFromFile()
    for code, path in planted.items():
        entry = by_path[path]
        results = load(dict(img_path=str(path), width=entry["width"], height=entry["height"]))
        if code in {"missing-image", "truncated-image", "unreadable-image", "size-mismatch"}:
            assert results is None and messages.about(code, path), code
            with pytest.raises(BadSampleError, match=rf"{re.escape(str(path))}: {code}"):
                raising(dict(img_path=str(path), width=entry["width"], height=entry["height"]))
            continue
        assert results["img"].shape == (entry["height"], entry["width"], 3), code  # the json's frame
        if code in {"grayscale-image", "rgba-image", "exif-orientation"}:
            assert messages.about(code, path), code


def test_det_stock_loader_rotates_exif_images_away_from_their_boxes(bad_coco):
    """mmcv's LoadImageFromFile applies the EXIF rotation: the image no longer has the json's (stored) size."""
    import json

    root, planted = bad_coco
    path = planted["exif-orientation"]
    entry = next(im for im in json.loads((root / "annotations" / "instances_train.json").read_text())["images"]
                 if im["file_name"] == path.name)
    stock = LoadImageFromFile()(dict(img_path=str(path)))
    assert stock["img"].shape[:2] == (entry["width"], entry["height"]) != (entry["height"], entry["width"])
    ours = RoPELoadImageFromFile()(dict(img_path=str(path), width=entry["width"], height=entry["height"]))
    flipped = RoPELoadImageFromFile(exif_orientation="stored")(dict(img_path=str(path)))
    np.testing.assert_array_equal(ours["img"], flipped["img"])
    shown = RoPELoadImageFromFile()(dict(img_path=str(path)))  # inference, no annotation: displayed, as mmcv
    np.testing.assert_array_equal(shown["img"], stock["img"])


def test_det_mim_train_stops_before_the_first_iteration(bad_coco, tmp_path, mim):
    root, planted = bad_coco
    r = f"{root}/"
    with pytest.raises(AssertionError) as exc:  # the mim fixture asserts a zero exit status
        mim("train", "mmdet", str(DET), "--work-dir", str(tmp_path / "work"), "--cfg-options",
            "train_cfg.max_iters=2", f"train_dataloader.dataset.data_root={r}",
            f"val_dataloader.dataset.data_root={r}", f"val_evaluator.ann_file={r}annotations/instances_val.json",
            cwd=tmp_path)
    out = str(exc.value)
    assert "problem(s) in the data would crash or corrupt training" in out and "Iter(train)" not in out
    for code in DET_ERRORS:
        assert str(planted[code]) in out, code


# ---- segmentation ---------------------------------------------------------------------------------------------------
def test_seg_preflight_stops_with_every_broken_file(bad_ade):
    root, planted = bad_ade
    _, dataset = _dataset(SEG, root, "mmseg")
    with pytest.raises(BadSampleError) as exc:
        _hook_on(dataset)
    text = str(exc.value)
    for code, path in planted:
        if code in SEG_ERRORS:
            assert re.search(rf"{code}\s+{re.escape(str(path))}", text), (code, text)
    with pytest.raises(BadSampleError, match=r"label-out-of-range\s+\S+ADE_training_00000008.png"):
        _hook_on(dataset, decode=True)  # label values need the pixels


def test_seg_preflight_warns_naming_each_file(bad_ade, caplog):
    root, planted = bad_ade
    _, dataset = _dataset(SEG, root, "mmseg")
    with caplog.at_level(logging.WARNING, logger="test_bad_data.hook"):
        _hook_on(dataset, errors="warn", decode=True)
    for code, path in planted:
        assert any(code in r.getMessage() and str(path) in r.getMessage() for r in caplog.records), code


def test_seg_pipeline_skips_bad_label_maps_naming_them(bad_ade, messages):
    """Loader + LoadAnnotations + RoPECheckSegMap of the guarded train pipeline, sample by sample."""
    root, planted = bad_ade
    cfg, dataset = _dataset(SEG, root, "mmseg")
    head = Compose(cfg.train_dataloader.dataset.pipeline[:3])
    skipped = {"missing-label-map", "truncated-image", "label-size-mismatch", "label-out-of-range",
               "label-map-not-single-channel"}
    loaded_with_warning = {"grayscale-image", "exif-orientation", "empty-label-map"}
    seen = set()
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        mine = {code for code, path in planted if str(path) in (info["img_path"], info["seg_map_path"])}
        out = head(dict(info))
        if mine & skipped:
            assert out is None, mine
        else:
            assert out["gt_seg_map"].shape == out["img"].shape[:2], mine  # image and labels line up
        for code in mine & (skipped | loaded_with_warning):
            path = next(p for c, p in planted if c == code)
            assert messages.about(code, path), code
        seen |= mine
    assert seen == {code for code, _ in planted} - {"orphan-label-map", "unexpected-suffix", "rgba-image"}


def test_seg_stock_pipeline_fails_deep_in_the_loss_on_out_of_range_labels(bad_ade):
    """What the guard prevents: mmseg loads the label map as is, and the cross-entropy meets label 199 of 150."""
    import torch
    import torch.nn.functional as F

    root, planted = bad_ade
    cfg, dataset = _dataset(SEG, root, "mmseg")
    stock = Compose([dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True)])
    path = next(p for c, p in planted if c == "label-out-of-range")
    info = next(dataset.get_data_info(i) for i in range(len(dataset))
                if dataset.get_data_info(i)["seg_map_path"] == str(path))
    labels = torch.from_numpy(stock(dict(info))["gt_seg_map"].astype(np.int64))[None]
    assert int(labels[labels != 255].max()) >= 150
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(torch.zeros(1, 150, *labels.shape[1:]), labels, ignore_index=255)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["mmdet", "mmseg"])
def test_training_on_with_errors_as_warnings_skips_each_bad_sample(framework, bad_coco, bad_ade, tmp_path, mim):
    """errors='warn': the run completes; every damaged sample it met was skipped with a warning naming it."""
    if framework == "mmdet":
        root, cfg = bad_coco[0], DET
        data = [f"train_dataloader.dataset.data_root={root}/", f"val_dataloader.dataset.data_root={root}/",
                f"val_evaluator.ann_file={root}/annotations/instances_val.json"]
        expect = {"missing-image", "truncated-image", "unreadable-image", "size-mismatch"}
        planted = set(bad_coco[1].items())
    else:
        root, cfg = bad_ade[0], SEG
        data = [f"{k}.dataset.data_root={root}" for k in ("train_dataloader", "val_dataloader")]
        expect = {"missing-label-map", "truncated-image", "label-size-mismatch", "label-out-of-range",
                  "label-map-not-single-channel"}
        planted = bad_ade[1]
    out = mim("train", framework, str(cfg), "--work-dir", str(tmp_path / "work"), "--cfg-options",
              "train_cfg.max_iters=6", "train_cfg.val_interval=100", "train_dataloader.batch_size=2",
              "train_dataloader.sampler.shuffle=False", "custom_hooks.0.errors=warn", *data, cwd=tmp_path)
    assert "Iter(train) [6/6]" in out
    for code, path in planted:
        if code in expect:
            assert re.search(rf"{re.escape(str(path))}: {code}: .*sample skipped", out), code


@pytest.mark.parametrize("guarded", [DET, SEG], ids=["mmdet", "mmseg"])
def test_guarded_tiny_configs_differ_from_the_tiny_ones_only_by_the_guards(guarded):
    plain = Config.fromfile(str(guarded).replace("-guarded", ""))
    cfg = Config.fromfile(str(guarded))
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        unguarded = []
        for t in (dict(t) for t in cfg[key].dataset.pipeline):
            if t["type"] == "RoPECheckSegMap":
                continue
            if t["type"] == "RoPELoadImageFromFile":
                t.pop("on_error", None)
                t["type"] = "LoadImageFromFile"
            unguarded.append(t)
        assert unguarded == [dict(t) for t in plain[key].dataset.pipeline], key
    assert cfg.default_hooks.checkpoint.type == "RoPECheckpointHook"
    assert {k: v for k, v in cfg.default_hooks.checkpoint.items() if k != "type"} == {
        k: v for k, v in plain.default_hooks.checkpoint.items() if k != "type"}
    assert cfg.model == plain.model and cfg.optim_wrapper == plain.optim_wrapper
