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
