"""The generated tiny datasets are valid COCO / ADE20k files."""

import json

import numpy as np
import pytest
from PIL import Image

from ropevit_dense.data import ADE20K_NUM_CLASSES, COCO_SHAPE_CLASSES, make_ade20k, make_coco
from ropevit_dense.data.synthetic import ADE20K_USED_LABELS


def test_coco_files_load_with_pycocotools(tiny_coco):
    from pycocotools.coco import COCO

    coco = COCO(str(tiny_coco / "annotations" / "instances_train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(COCO_SHAPE_CLASSES)
    assert len(coco.getImgIds()) == 8
    used = {a["category_id"] for a in coco.loadAnns(coco.getAnnIds())}
    assert len(used) >= 2, "instances of several classes"
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(tiny_coco / "train" / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert anns
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"] and w > 4 and h > 4
            mask = coco.annToMask(a)
            assert mask.sum() > 0.4 * w * h


def test_coco_is_deterministic(tmp_path):
    a = make_coco(tmp_path / "a", num_images=2, seed=3)
    b = make_coco(tmp_path / "b", num_images=2, seed=3)
    assert json.loads(a["train"].read_text()) == json.loads(b["train"].read_text())


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_images"):
        make_coco("/tmp/never", num_images=0)
    with pytest.raises(ValueError, match="image_size"):
        make_ade20k("/tmp/never", image_size=(8, 8))


def test_ade20k_layout_and_reduce_zero_label(tiny_ade20k):
    images = sorted((tiny_ade20k / "images" / "training").glob("*.jpg"))
    labels = sorted((tiny_ade20k / "annotations" / "training").glob("*.png"))
    assert len(images) == len(labels) == 8
    assert [p.stem for p in images] == [p.stem for p in labels]
    seen = set()
    for img, lab in zip(images, labels):
        arr = np.array(Image.open(lab))
        assert arr.dtype == np.uint8 and arr.ndim == 2
        assert Image.open(img).size == (arr.shape[1], arr.shape[0])
        seen |= set(np.unique(arr).tolist())
    assert seen <= {0, *ADE20K_USED_LABELS} and 0 in seen and max(seen) <= ADE20K_NUM_CLASSES

    pytest.importorskip("mmseg")
    from mmseg.datasets.transforms import LoadAnnotations

    arr = np.array(Image.open(labels[0]))
    out = LoadAnnotations(reduce_zero_label=True)({"seg_map_path": str(labels[0]), "seg_fields": [],
                                                    "reduce_zero_label": True})
    reduced = out["gt_seg_map"]
    assert np.all(reduced[arr == 0] == 255)
    assert np.all(reduced[arr > 0] == arr[arr > 0] - 1)


# -- COCO panoptic ---------------------------------------------------------------------------------------------
def _segment_ids(png_path):
    rgb = np.asarray(Image.open(png_path).convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def test_coco_panoptic_png_ids_match_segments_info(tmp_path):
    from ropevit_dense.data import COCO_PANOPTIC_STUFF_CLASSES, make_coco_panoptic

    files = make_coco_panoptic(tmp_path, num_images=3, splits=("train",), seed=1)
    pan = json.loads(files["train"].read_text())
    cats = {c["id"]: c for c in pan["categories"]}
    assert [c["name"] for c in pan["categories"]] == [*COCO_SHAPE_CLASSES, *COCO_PANOPTIC_STUFF_CLASSES]
    assert {c["isthing"] for c in pan["categories"]} == {0, 1}
    images = {im["id"]: im for im in pan["images"]}
    for ann in pan["annotations"]:
        img = images[ann["image_id"]]
        assert ann["file_name"] == img["file_name"].replace(".jpg", ".png")
        ids = _segment_ids(tmp_path / "annotations" / "panoptic_train" / ann["file_name"])
        assert ids.shape == (img["height"], img["width"])
        assert set(np.unique(ids).tolist()) == {s["id"] for s in ann["segments_info"]}, "every pixel in a segment"
        things = 0
        for s in ann["segments_info"]:
            mask = ids == s["id"]
            assert s["area"] == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            things += cats[s["category_id"]]["isthing"]
        assert things >= 1
    with Image.open(tmp_path / "train" / pan["images"][0]["file_name"]) as im:
        assert im.size == (pan["images"][0]["width"], pan["images"][0]["height"])


def test_coco_panoptic_instances_json_holds_the_things(tmp_path):
    from pycocotools.coco import COCO

    from ropevit_dense.data import make_coco_panoptic

    make_coco_panoptic(tmp_path, num_images=3, splits=("val",), seed=2)
    pan = json.loads((tmp_path / "annotations" / "panoptic_val.json").read_text())
    coco = COCO(str(tmp_path / "annotations" / "instances_val.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(COCO_SHAPE_CLASSES)
    for ann in pan["annotations"]:
        ids = _segment_ids(tmp_path / "annotations" / "panoptic_val" / ann["file_name"])
        things = [s for s in ann["segments_info"] if s["category_id"] <= len(COCO_SHAPE_CLASSES)]
        inst = coco.loadAnns(coco.getAnnIds(imgIds=ann["image_id"]))
        assert sorted(a["category_id"] for a in inst) == sorted(s["category_id"] for s in things)
        for a in inst:  # the polygon and the panoptic segment of the same shape cover the same pixels
            mask = coco.annToMask(a).astype(bool)
            best = max(things, key=lambda s: np.logical_and(mask, ids == s["id"]).sum())
            iou = np.logical_and(mask, ids == best["id"]).sum() / np.logical_or(mask, ids == best["id"]).sum()
            assert iou > 0.8 and best["category_id"] == a["category_id"]  # two rasterisers, small shapes


def test_coco_panoptic_is_deterministic_and_checks_arguments(tmp_path):
    from ropevit_dense.data import make_coco_panoptic

    a = make_coco_panoptic(tmp_path / "a", num_images=2, seed=3, splits=("val",))
    b = make_coco_panoptic(tmp_path / "b", num_images=2, seed=3, splits=("val",))
    assert json.loads(a["val"].read_text()) == json.loads(b["val"].read_text())
    with pytest.raises(ValueError, match="num_images"):
        make_coco_panoptic(tmp_path / "c", num_images=0)
    with pytest.raises(ValueError, match="image_size"):
        make_coco_panoptic(tmp_path / "c", image_size=(16, 64))


def test_coco_panoptic_loads_in_mmdet(tmp_path):
    """mmdet's CocoPanopticDataset and LoadPanopticAnnotations read the files: labels things first, then stuff."""
    pytest.importorskip("mmdet")
    pytest.importorskip("panopticapi", reason="mmdet's panoptic loading needs panopticapi (make setup installs it)")
    from mmdet.datasets import CocoPanopticDataset
    from mmdet.datasets.transforms import LoadPanopticAnnotations

    from ropevit_dense.data import COCO_PANOPTIC_STUFF_CLASSES, make_coco_panoptic

    make_coco_panoptic(tmp_path, num_images=2, splits=("train",))
    classes = (*COCO_SHAPE_CLASSES, *COCO_PANOPTIC_STUFF_CLASSES)
    ds = CocoPanopticDataset(
        data_root=str(tmp_path), ann_file="annotations/panoptic_train.json",
        data_prefix=dict(img="train/", seg="annotations/panoptic_train/"),
        metainfo=dict(classes=classes, thing_classes=COCO_SHAPE_CLASSES, stuff_classes=COCO_PANOPTIC_STUFF_CLASSES),
        pipeline=[dict(type="LoadImageFromFile")])
    assert len(ds) == 2
    info = ds.get_data_info(0)
    results = LoadPanopticAnnotations(with_bbox=True, with_label=True, with_mask=True, with_seg=True)(
        dict(ds[0], segments_info=info["segments_info"], instances=info["instances"]))
    sem = results["gt_seg_map"]
    assert set(np.unique(sem).tolist()) <= {0, 1, 2, 3, 4}
    assert {3, 4} & set(np.unique(sem).tolist()), "stuff labels follow the three thing labels"
    assert len(results["gt_masks"]) == len(info["instances"]) >= 1
