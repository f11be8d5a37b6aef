"""The dataset doctor finds every planted defect, names the file, and is quiet on clean data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ropevit_dense.data import COCO_SHAPE_CLASSES, make_ade20k, make_coco
from ropevit_dense.data.check import (
    ImageHeader,
    annotation_frame,
    check_coco,
    check_dataset,
    check_segmentation,
    detect_format,
    jpeg_is_truncated,
    main,
)
from ropevit_dense.data.defects import plant_ade20k_defects, plant_coco_defects

CLI = [sys.executable, "-m", "ropevit_dense.data", "check"]


@pytest.fixture(scope="module")
def bad_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_coco")
    make_coco(root, num_images=12, splits=("train",), seed=5)
    return root, plant_coco_defects(root)


@pytest.fixture(scope="module")
def bad_ade(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_ade")
    make_ade20k(root, num_images=12, splits=("training",), seed=5)
    return root, plant_ade20k_defects(root)


def _found(report) -> set[tuple[str, Path]]:
    return {(p.code, p.path) for p in report.problems}


def test_every_planted_coco_defect_is_found(bad_coco):
    root, planted = bad_coco
    report = check_dataset(root, classes=COCO_SHAPE_CLASSES)
    missing = {(d.code, d.path) for d in planted} - _found(report)
    assert not missing, f"not reported: {missing}\n" + "\n".join(map(str, report.problems))
    assert len(planted) == 11 and len(report.problems) == len(planted), "\n".join(map(str, report.problems))
    errors = {p.code for p in report.errors}
    assert errors == {"missing-image", "truncated-image", "unreadable-image", "unknown-category", "size-mismatch"}


def test_every_planted_ade20k_defect_is_found(bad_ade):
    root, planted = bad_ade
    report = check_dataset(root, fmt="ade20k")
    missing = {(d.code, d.path) for d in planted} - _found(report)
    assert not missing, f"not reported: {missing}\n" + "\n".join(map(str, report.problems))
    assert len(report.problems) == len(planted), "\n".join(map(str, report.problems))
    assert {p.code for p in report.errors} == {"missing-label-map", "truncated-image", "label-size-mismatch",
                                              "label-out-of-range", "label-map-not-single-channel"}


def test_quick_mode_still_finds_file_level_defects(bad_coco, bad_ade):
    root, planted = bad_coco
    found = _found(check_dataset(root, classes=COCO_SHAPE_CLASSES, decode=False))
    assert {(d.code, d.path) for d in planted} <= found  # the truncated JPEG is caught by its missing end marker
    root, planted = bad_ade
    found = _found(check_dataset(root, decode=False))
    value_level = {"label-out-of-range", "empty-label-map"}  # need the pixel values
    assert {(d.code, d.path) for d in planted if d.code not in value_level} <= found


def test_clean_datasets_have_no_problem(tiny_coco, tiny_ade20k):
    coco = check_dataset(tiny_coco, classes=COCO_SHAPE_CLASSES)
    assert coco.problems == [] and coco.checked["images"] == 16 and coco.checked["annotations"] > 16
    ade = check_dataset(tiny_ade20k)
    assert ade.problems == [] and ade.checked["images"] == 16 and ade.checked["label maps"] == 16


def test_cli_lists_each_problem_on_one_line_and_exits_non_zero(bad_coco, tiny_coco, capsys):
    root, planted = bad_coco
    assert main([str(root), "--classes", ",".join(COCO_SHAPE_CLASSES)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(planted) + 1
    for defect in planted:
        assert any(line.split()[1] == defect.code and str(defect.path) in line for line in lines[:-1]), defect
    assert lines[-1].startswith("checked ") and "5 error(s), 6 warning(s)" in lines[-1]
    assert main([str(tiny_coco)]) == 0 and "0 error(s), 0 warning(s)" in capsys.readouterr().out


def test_cli_single_annotation_file_and_usage_errors(bad_coco, tmp_path, capsys):
    root, _ = bad_coco
    ann = root / "annotations" / "instances_train.json"
    assert main([str(ann), "--img-root", str(root / "train")]) == 1 and "missing-image" in capsys.readouterr().out
    for argv, message in (([str(ann)], "--img-root"), ([str(tmp_path)], "cannot tell the layout"),
                          ([str(tmp_path / "nope")], "does not exist")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_module_command(bad_ade):
    """``python -m ropevit_dense.data check`` reaches the doctor (and the generator commands still work)."""
    root, _ = bad_ade
    proc = subprocess.run([*CLI, str(root), "--format", "ade20k"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "label-out-of-range" in proc.stdout, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("checked 11 images, 9 label maps: 5 error(s), 7 warning(s)")


def test_layout_detection(tiny_coco, tiny_ade20k, tmp_path):
    assert detect_format(tiny_coco) == "coco"
    assert detect_format(tiny_coco / "annotations" / "instances_val.json") == "coco"
    assert detect_format(tiny_ade20k) == "ade20k"
    with pytest.raises(ValueError, match="cannot tell the layout"):
        detect_format(tmp_path)


def test_classes_that_match_no_category_are_an_error(tiny_coco):
    report = check_coco(tiny_coco / "annotations" / "instances_val.json", tiny_coco / "val", classes=["cat"])
    assert [p.code for p in report.errors] == ["no-matching-classes"]


def test_broken_annotation_file_and_missing_folders(tmp_path):
    bad = tmp_path / "instances_x.json"
    bad.write_text("{not json")
    assert [p.code for p in check_coco(bad, tmp_path).errors] == ["bad-annotation-file"]
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 4}],
                               "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1]}],
                               "categories": [{"id": 1, "name": "a"}]}))
    codes = {p.code for p in check_coco(bad, tmp_path).problems}
    assert {"orphan-annotation", "bad-image-entry", "missing-image", "no-annotations"} <= codes
    report = check_segmentation(tmp_path / "nope", tmp_path)
    assert [p.code for p in report.errors] == ["missing-folder"]


def test_label_values_without_reduce_zero_label(tmp_path):
    img_dir, seg_dir = tmp_path / "img", tmp_path / "seg"
    img_dir.mkdir()
    seg_dir.mkdir()
    Image.new("RGB", (8, 6)).save(img_dir / "a.jpg")
    Image.new("L", (8, 6), 3).save(seg_dir / "a.png")  # class 3 of 3 classes (0..2) is out of range
    report = check_segmentation(img_dir, seg_dir, num_classes=3, reduce_zero_label=False)
    assert [p.code for p in report.errors] == ["label-out-of-range"] and "3 (48 px)" in report.errors[0].message
    assert check_segmentation(img_dir, seg_dir, num_classes=4, reduce_zero_label=False).problems == []


def test_annotation_frame_and_truncation_marker(tmp_path):
    sideways = ImageHeader(size=(40, 20), mode="RGB", orientation=6)
    assert sideways.displayed_size == (20, 40)
    assert annotation_frame(sideways, (40, 20)) == "stored"
    assert annotation_frame(sideways, (20, 40)) == "displayed"
    assert annotation_frame(sideways, (30, 30)) == "mismatch"
    assert annotation_frame(ImageHeader((40, 20), "RGB", 3), (40, 20)) == "either"
    assert annotation_frame(sideways, None) == "unknown"
    path = tmp_path / "a.jpg"
    Image.new("RGB", (16, 16)).save(path)
    assert not jpeg_is_truncated(path)
    path.write_bytes(path.read_bytes()[:-200])
    assert jpeg_is_truncated(path)
