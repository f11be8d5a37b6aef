"""Bad inputs to the inference command give clear errors that name the problem; outputs are never replaced silently."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ropevit_dense.infer import InferError, detect_framework, run
from ropevit_dense.infer.core import category_ids, collect_images, image_ids

ROOT = Path(__file__).resolve().parents[2]


def _image(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (40, 32), (90, 120, 150)).save(path)
    return path


# -- inputs, checked before anything is built -------------------------------------------------------------------------
def test_missing_config_and_unknown_framework(tmp_path):
    with pytest.raises(InferError, match="config not found: '.*nope.py'"):
        detect_framework(tmp_path / "nope.py")
    (tmp_path / "model.yaml").write_text("MODEL: {}\n")
    with pytest.raises(InferError, match="is not a .py file"):
        detect_framework(tmp_path / "model.yaml")
    (tmp_path / "plain.py").write_text("x = 1\nmodel = dict(type='Foo')\n")
    with pytest.raises(InferError, match="of no known framework"):
        detect_framework(tmp_path / "plain.py")
    (tmp_path / "broken.py").write_text("model = dict(\n")
    with pytest.raises(InferError, match="is not valid Python"):
        detect_framework(tmp_path / "broken.py")


def test_mmengine_config_of_another_scope(tmp_path):
    pytest.importorskip("mmengine")
    (tmp_path / "pose.py").write_text("default_scope = 'mmpose'\nmodel = dict(type='TopdownPoseEstimator')\n")
    with pytest.raises(InferError, match="default_scope='mmpose'.*'mmdet' and 'mmseg'"):
        detect_framework(tmp_path / "pose.py")


def test_framework_detection_of_the_project_configs():
    pytest.importorskip("mmdet")
    assert detect_framework(ROOT / "configs/segmentation/mmdet/mask2former_ropeswin-t-p4-w7-mixed_8xb2-lsj-50e_coco.py"
                            ) == "mmdet"
    assert detect_framework(ROOT / "configs/segmentation/mmseg/tiny/"
                                   "upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py") == "mmseg"
    d2 = ROOT / "configs/detection/detectron2/mask_rcnn_vitdet_b_rope_mixed_100ep.py"
    assert detect_framework(d2) == "detectron2"


def test_images_unknown_format_empty_folder_undecodable_and_clashing_names(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InferError, match=r"unknown image format '.txt' of '.*notes.txt'"):
        collect_images([tmp_path / "notes.txt"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(InferError, match=r"no images \(.jpg.*\) in folder '.*empty'"):
        collect_images(tmp_path / "empty")
    with pytest.raises(InferError, match="input not found: '.*missing.jpg'"):
        collect_images([tmp_path / "missing.jpg"])
    (tmp_path / "fake.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(InferError, match="cannot decode image '.*fake.jpg'"):
        collect_images([tmp_path / "fake.jpg"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(InferError, match="two inputs share the name 'x'"):
        collect_images([_image(tmp_path / "a" / "x.png"), _image(tmp_path / "b" / "x.jpg")])
    with pytest.raises(InferError, match="no input images"):
        collect_images([])


def test_ids_from_names_json_or_order(tmp_path):
    files = [tmp_path / "000000000139.jpg", tmp_path / "000000000285.jpg"]
    assert image_ids(files, None) == [139, 285]
    assert image_ids([tmp_path / "cat.jpg", tmp_path / "dog.jpg"], None) == [1, 2]
    coco = {"images": [{"id": 7, "file_name": "val/cat.jpg"}], "categories": [{"id": 5, "name": "cat"}]}
    assert image_ids([tmp_path / "cat.jpg"], coco) == [7]
    with pytest.raises(InferError, match="not listed in the annotation file: dog.jpg"):
        image_ids([tmp_path / "dog.jpg"], coco)
    assert category_ids(["cat"], coco) == [5]
    with pytest.raises(InferError, match=r"classes \['dog'\] of the model are not among"):
        category_ids(["dog"], coco)
    assert category_ids(["square", "disk"], None) == [1, 2]


def test_missing_checkpoint_and_bad_arguments(tmp_path):
    pytest.importorskip("mmdet")
    config = ROOT / "configs/segmentation/mmdet/tiny/mask2former_ropeswin-tiny-mixed_1xb2-lsj-400i_tinycoco.py"
    img = _image(tmp_path / "img.png")
    with pytest.raises(InferError, match="checkpoint not found: '.*absent.pth'"):
        run(config, tmp_path / "absent.pth", img, out=tmp_path / "out")
    with pytest.raises(InferError, match="batch size must be >= 1"):
        run(config, tmp_path / "absent.pth", img, out=tmp_path / "out", batch_size=0)
    with pytest.raises(InferError, match=r"score threshold must be in \[0, 1\]"):
        run(config, tmp_path / "absent.pth", img, out=tmp_path / "out", score_thr=1.5)


# -- checkpoints ------------------------------------------------------------------------------------------------------
class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_wrong_corrupt_and_malicious_checkpoints(tmp_path, mm_checkpoints, configs):
    img = _image(tmp_path / "img.png")
    # the panoptic model's checkpoint for the instance config: 5 classes instead of 3
    with pytest.raises(InferError, match="does not fit the model of .*: .*keys of another shape"):
        run(configs["instance"], mm_checkpoints["panoptic"], img, out=tmp_path / "o1", progress=False)
    with pytest.raises(InferError, match="does not fit the model of .*keys missing .*unexpected"):
        run(configs["instance"], mm_checkpoints["detection"], img, out=tmp_path / "o2", progress=False)
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InferError, match="cannot read checkpoint '.*corrupt.pth'"):
        run(configs["instance"], tmp_path / "corrupt.pth", img, out=tmp_path / "o3", progress=False)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": _RunsCode()}, evil, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(InferError, match="refusing to load '.*evil.pth'"):
        run(configs["instance"], evil, img, out=tmp_path / "o4", progress=False)
    assert not (tmp_path / "o4" / "vis").exists()


def test_existing_outputs_need_force(tmp_path, mm_checkpoints, configs):
    img = _image(tmp_path / "img.png")
    out = tmp_path / "out"
    first = run(configs["instance"], mm_checkpoints["instance"], img, out=out, progress=False)
    stamp = first.overlays[0].stat().st_mtime_ns
    with pytest.raises(InferError, match=r"outputs exist: .*vis/img.png.*pass --force"):
        run(configs["instance"], mm_checkpoints["instance"], img, out=out, progress=False)
    assert first.overlays[0].stat().st_mtime_ns == stamp
    again = run(configs["instance"], mm_checkpoints["instance"], img, out=out, force=True, progress=False)
    assert again.overlays == first.overlays


def test_command_line(tmp_path, mm_checkpoints, configs):
    """The CLI prints the overlay paths; an error exits with status 2 and one line naming the problem."""
    img = _image(tmp_path / "img.png")
    cmd = [sys.executable, "-m", "ropevit_dense.infer", str(configs["instance"])]
    ok = subprocess.run([*cmd, str(mm_checkpoints["instance"]), str(img), "--out", str(tmp_path / "out"),
                         "--no-progress"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert f"overlay: {tmp_path / 'out' / 'vis' / 'img.png'}" in ok.stdout
    assert "coco_results: " in ok.stdout
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([*cmd, str(mm_checkpoints["instance"]), str(tmp_path / "empty"), "--out",
                          str(tmp_path / "out2")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2
    assert "error: no images" in bad.stderr and "Traceback" not in bad.stderr


def test_config_annotation_file_gives_categories_not_image_ids(tmp_path, tiny_coco, mm_checkpoints, configs):
    """The config's own test json (here present) maps categories; images outside it still get ids."""
    import json

    img = _image(tmp_path / "street.png")
    coco = json.loads((tiny_coco / "annotations" / "instances_val.json").read_text())
    for cat in coco["categories"]:
        cat["id"] += 6  # ids 7, 8, 9: not label + 1
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco))
    result = run(configs["instance"], mm_checkpoints["instance"], img, out=tmp_path / "out", score_thr=0.0,
                 cfg_options=[f"test_evaluator.ann_file={ann}"], progress=False)
    info = json.loads(result.results["image_info"].read_text())
    assert info["images"][0]["id"] == 1 and info["images"][0]["file_name"] == "street.png"
    assert [c["id"] for c in info["categories"]] == [7, 8, 9]
    assert {d["category_id"] for d in json.loads(result.results["coco_results"].read_text())} <= {7, 8, 9}
