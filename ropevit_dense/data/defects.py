"""Known defects planted into a generated COCO or ADE20k dataset, for testing data checks and loaders.

Start from the output of :func:`~ropevit_dense.data.make_coco` / :func:`~ropevit_dense.data.make_ade20k` and damage a
few of its files the way real datasets are damaged (a partial download, a photo straight from a phone, a label map
exported at the wrong size, ...). Each planted defect is returned with the problem code that
:mod:`ropevit_dense.data.check` reports for it and the file it is in, so a test can assert that every one is found::

    make_coco(root, num_images=12)
    planted = plant_coco_defects(root)          # [Defect(code='missing-image', path=.../train/000001.jpg), ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Defect:
    """One planted defect: the problem code the dataset doctor reports for it and the file it is in."""

    code: str
    path: Path


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _garble(path: Path) -> None:
    rng = np.random.default_rng(0)
    path.write_bytes(b"\xff\xd8\xff\xe0" + rng.integers(0, 256, size=2048, dtype=np.uint8).tobytes())


def _with_exif_orientation(path: Path, orientation: int) -> None:
    """Re-save ``path`` with the same stored pixels and an EXIF orientation tag (a phone photo held sideways)."""
    with Image.open(path) as im:
        pixels = im.convert("RGB")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    pixels.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def _to_grayscale(path: Path) -> None:
    with Image.open(path) as im:
        im.convert("L").save(path, format="JPEG", quality=95)


def _to_rgba_png(src: Path) -> Path:
    dst = src.with_suffix(".png")
    with Image.open(src) as im:
        rgba = im.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[: rgba.height // 3] = 0  # a transparent band, as in a cut-out
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(dst, format="PNG")
    src.unlink()
    return dst


def plant_coco_defects(root: str | Path, *, split: str = "train") -> list[Defect]:
    """Damage a :func:`make_coco` dataset (``split`` needs at least 11 images) and list what was planted.

    Planted, one image each: a missing image file; a truncated JPEG (a partial download: the header is intact,
    the pixels stop half-way); a file that is not an image at all; a grayscale JPEG; an RGBA PNG (the json entry is
    renamed to match); a JPEG with EXIF orientation 6 whose stored pixels are the ones annotated (COCO's
    ``width`` / ``height`` and boxes describe the stored pixel array); an image whose annotations were removed; a
    zero-area box; an annotation with a category id that the file does not define; a category the file defines
    (``hexagon``, id 4) that is not among the generator's three classes; an image whose json size disagrees with
    the file.

    Returns:
        list[Defect]: one entry per planted defect (code, file). Annotation-level defects name the image file.
    """
    root = Path(root)
    ann_file = root / "annotations" / f"instances_{split}.json"
    data = json.loads(ann_file.read_text())
    images = sorted(data["images"], key=lambda im: im["id"])
    if len(images) < 11:
        raise ValueError(f"plant_coco_defects needs at least 11 images in {ann_file}, found {len(images)}")
    img_dir = root / split
    path = {im["id"]: img_dir / im["file_name"] for im in images}
    anns_of: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        anns_of.setdefault(ann["image_id"], []).append(ann)
    planted: list[Defect] = []

    def plant(code: str, image: dict) -> None:
        planted.append(Defect(code, img_dir / image["file_name"]))

    missing, truncated, garbage, gray, rgba, rotated, empty, zero, unknown, extra, resized = images[:11]
    path[missing["id"]].unlink()
    plant("missing-image", missing)
    _truncate(path[truncated["id"]])
    plant("truncated-image", truncated)
    _garble(path[garbage["id"]])
    plant("unreadable-image", garbage)
    _to_grayscale(path[gray["id"]])
    plant("grayscale-image", gray)
    rgba["file_name"] = _to_rgba_png(path[rgba["id"]]).name
    plant("rgba-image", rgba)
    _with_exif_orientation(path[rotated["id"]], 6)
    plant("exif-orientation", rotated)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != empty["id"]]
    plant("no-annotations", empty)
    box = anns_of[zero["id"]][0]
    box["bbox"][2], box["area"] = 0.0, 0.0
    plant("zero-area-box", zero)
    anns_of[unknown["id"]][0]["category_id"] = 99
    plant("unknown-category", unknown)
    data["categories"].append({"id": 4, "name": "hexagon", "supercategory": "shape"})
    anns_of[extra["id"]][0]["category_id"] = 4
    plant("category-not-in-classes", extra)
    resized["width"] += 8  # the json says 8 pixels wider than the file
    plant("size-mismatch", resized)
    ann_file.write_text(json.dumps(data))
    return planted


def plant_ade20k_defects(root: str | Path, *, split: str = "training", num_classes: int = 150) -> list[Defect]:
    """Damage a :func:`make_ade20k` dataset (``split`` needs at least 10 images) and list what was planted.

    Planted, one image each: a missing image (its label map stays: the pair is silently dropped by mmseg, which
    lists images, not label maps); a missing label map; a truncated JPEG; a grayscale JPEG; an RGBA PNG image;
    a JPEG with EXIF orientation 6 (label map in the stored pixel frame); a label map of the wrong size; a label map
    with values above ``num_classes``; a label map with no labelled pixel (all 0 = "other", ignored after
    ``reduce_zero_label``); an RGB label map (colour-coded instead of class indices).

    Returns:
        list[Defect]: one entry per planted defect (code, file).
    """
    root = Path(root)
    img_dir, ann_dir = root / "images" / split, root / "annotations" / split
    images = sorted(img_dir.glob("*.jpg"))
    if len(images) < 10:
        raise ValueError(f"plant_ade20k_defects needs at least 10 images in {img_dir}, found {len(images)}")
    label = {p: ann_dir / f"{p.stem}.png" for p in images}
    missing, no_label, truncated, gray, rgba, rotated, wrong_size, out_of_range, empty, rgb_label = images[:10]
    planted: list[Defect] = []
    missing.unlink()
    planted.append(Defect("orphan-label-map", label[missing]))
    label[no_label].unlink()
    planted.append(Defect("missing-label-map", no_label))
    _truncate(truncated)
    planted.append(Defect("truncated-image", truncated))
    _to_grayscale(gray)
    planted.append(Defect("grayscale-image", gray))
    rgba_path = _to_rgba_png(rgba)  # a PNG: mmseg's ADE20k dataset lists '*.jpg' only, so it drops the pair
    planted += [Defect("rgba-image", rgba_path), Defect("unexpected-suffix", rgba_path),
                Defect("orphan-label-map", label[rgba])]
    _with_exif_orientation(rotated, 6)
    planted.append(Defect("exif-orientation", rotated))
    with Image.open(label[wrong_size]) as im:
        im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(label[wrong_size])
    planted.append(Defect("label-size-mismatch", label[wrong_size]))
    with Image.open(label[out_of_range]) as im:
        values = np.array(im)
    values[: values.shape[0] // 4, : values.shape[1] // 4] = min(num_classes + 50, 254)
    Image.fromarray(values).save(label[out_of_range])
    planted.append(Defect("label-out-of-range", label[out_of_range]))
    with Image.open(label[empty]) as im:
        Image.new("L", im.size, 0).save(label[empty])
    planted.append(Defect("empty-label-map", label[empty]))
    with Image.open(label[rgb_label]) as im:
        im.convert("RGB").save(label[rgb_label])
    planted.append(Defect("label-map-not-single-channel", label[rgb_label]))
    return planted
