"""The inference command on each task writes decodable overlays and valid COCO / panoptic / label-map results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mmdet")


def _check_overlays(result, images):
    assert [p.stem for p in result.overlays] == [p.stem for p in images]
    for overlay, image in zip(result.overlays, images):
        assert overlay.suffix == ".png"
        with Image.open(overlay) as vis, Image.open(image) as src:
            assert vis.format == "PNG" and vis.mode == "RGB" and vis.size == src.size
            vis.load()


def _coco_eval(gt_file: Path, results_file: Path, iou_type: str) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_file))
    dets = json.loads(results_file.read_text())
    assert dets, "no detections at score threshold 0"
    assert {d["image_id"] for d in dets} <= set(gt.getImgIds())
    assert {d["category_id"] for d in dets} <= set(gt.getCatIds())
    ev = COCOeval(gt, gt.loadRes(str(results_file)), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def test_detection_boxes(tiny_coco, configs, mm_checkpoints, tmp_path):
    from ropevit_dense.infer import run

    images = sorted((tiny_coco / "val").glob("*.jpg"))[:3]
    ann = tiny_coco / "annotations" / "instances_val.json"
    result = run(configs["detection"], mm_checkpoints["detection"], images, out=tmp_path / "out", score_thr=0.0,
                 batch_size=2, ann_file=ann, progress=False)
    assert result.framework == "mmdet"
    _check_overlays(result, images)
    assert "segmentation" not in json.loads(result.results["coco_results"].read_text())[0]
    _coco_eval(ann, result.results["coco_results"], "bbox")
    info = json.loads(result.results["image_info"].read_text())
    assert [im["file_name"] for im in info["images"]] == [p.name for p in images]


def test_instance_masks(tiny_coco, configs, mm_checkpoints, tmp_path):
    from ropevit_dense.infer import run

    images = sorted((tiny_coco / "val").glob("*.jpg"))[:2]
    ann = tiny_coco / "annotations" / "instances_val.json"
    result = run(configs["instance"], mm_checkpoints["instance"], images, out=tmp_path / "out", score_thr=0.0,
                 ann_file=ann, progress=False)
    _check_overlays(result, images)
    dets = json.loads(result.results["coco_results"].read_text())
    assert all(set(d["segmentation"]) == {"size", "counts"} for d in dets)
    _coco_eval(ann, result.results["coco_results"], "segm")


def test_panoptic_pngs_and_json(tiny_panoptic, configs, mm_checkpoints, tmp_path):
    """COCO panoptic output that panopticapi's own PQ computation accepts, category ids mapped to the dataset's."""
    pytest.importorskip("panopticapi", reason="panoptic outputs use panopticapi (make setup installs it)")
    from panopticapi.evaluation import pq_compute
    from panopticapi.utils import rgb2id

    from ropevit_dense.infer import run

    images = sorted((tiny_panoptic / "val").glob("*.jpg"))
    ann = tiny_panoptic / "annotations" / "panoptic_val.json"
    # random weights score every query below the fusion's thresholds; lower them so that there are segments
    result = run(configs["panoptic"], mm_checkpoints["panoptic"], tiny_panoptic / "val", out=tmp_path / "out",
                 ann_file=ann, cfg_options=["model.test_cfg.filter_low_score=False",
                                            "model.test_cfg.object_mask_thr=0.0"], progress=False)
    _check_overlays(result, images)
    pan = json.loads(result.results["panoptic_json"].read_text())
    gt = json.loads(ann.read_text())
    assert {c["id"] for c in pan["categories"]} == {c["id"] for c in gt["categories"]}
    assert {c["name"]: c["isthing"] for c in pan["categories"]} == {c["name"]: c["isthing"] for c in gt["categories"]}
    n_segments = 0
    for entry in pan["annotations"]:
        ids = rgb2id(np.asarray(Image.open(result.out_dir / "panoptic" / entry["file_name"])))
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in entry["segments_info"]}
        for s in entry["segments_info"]:
            assert s["area"] == int((ids == s["id"]).sum()) > 0
        n_segments += len(entry["segments_info"])
    assert n_segments > 0
    stats = pq_compute(str(ann), str(result.results["panoptic_json"]), gt_folder=str(ann.with_suffix("")),
                       pred_folder=str(result.out_dir / "panoptic"))
    assert 0.0 <= stats["All"]["pq"] <= 1.0


def test_semantic_label_maps(tiny_ade20k, configs, mm_checkpoints, tmp_path):
    pytest.importorskip("mmseg")
    from ropevit_dense.infer import run

    images = sorted((tiny_ade20k / "images" / "validation").glob("*.jpg"))[:2]
    result = run(configs["semantic"], mm_checkpoints["semantic"], images, out=tmp_path / "out", progress=False)
    assert result.framework == "mmseg"
    _check_overlays(result, images)
    meta = json.loads(result.results["semantic_json"].read_text())
    assert meta["label_values"]["0"].startswith("(ignored")  # ADE20k: reduce_zero_label, labels 1..150 on disk
    assert len(meta["label_values"]) == 151
    for image, png in zip(images, result.results["semantic_pngs"]):
        with Image.open(png) as lab, Image.open(image) as src:
            arr = np.asarray(lab)
            assert lab.size == src.size and arr.ndim == 2
            assert 1 <= arr.min() and arr.max() <= 150


@pytest.mark.detectron2
def test_detectron2_lazyconfig(tiny_coco, configs, tmp_path):
    import torch
    from detectron2.config import LazyConfig, instantiate

    from ropevit_dense.adapters.d2_train import drop_pretrained
    from ropevit_dense.infer import run

    cfg = LazyConfig.load(str(configs["detectron2"]))
    drop_pretrained(cfg.model)
    torch.manual_seed(0)
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": instantiate(cfg.model).state_dict(), "iteration": 300}, ckpt)
    images = sorted((tiny_coco / "val").glob("*.jpg"))[:2]
    ann = tiny_coco / "annotations" / "instances_val.json"
    result = run(configs["detectron2"], ckpt, images, out=tmp_path / "out", score_thr=0.0, batch_size=2,
                 ann_file=ann, progress=False)
    assert result.framework == "detectron2"
    _check_overlays(result, images)
    dets = json.loads(result.results["coco_results"].read_text())
    if dets:  # a random Mask R-CNN may propose nothing above its own test score
        _coco_eval(ann, result.results["coco_results"], "segm")
    info = json.loads(result.results["image_info"].read_text())
    assert [c["name"] for c in info["categories"]] == ["square", "disk", "triangle"]

    # a detectron2 .pkl (numpy arrays, as the model zoo's), read with the restricted unpickler: the same predictions
    import pickle

    pkl = tmp_path / "model_final.pkl"
    sd = torch.load(ckpt, weights_only=True)["model"]
    pkl.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in sd.items()}, "__author__": "test"}))
    again = run(configs["detectron2"], pkl, images, out=tmp_path / "out_pkl", score_thr=0.0, batch_size=2,
                ann_file=ann, progress=False)
    assert json.loads(again.results["coco_results"].read_text()) == dets
