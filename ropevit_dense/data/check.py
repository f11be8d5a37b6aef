"""Dataset doctor: every problem of a COCO- or ADE20k-layout dataset, listed before training starts.

What mmdet 3.3 / mmseg 1.2 do with each problem decides its severity:

* **error** — training would crash when the sample comes up (a missing or unreadable image, a missing label map,
  labels outside the class range, a label map with colour channels) or train silently on wrong targets (an image
  whose size disagrees with its annotations, an annotation of a category the file does not define);
* **warning** — the framework copes, but the sample is dropped or changed without a word (images without
  annotations, zero-area boxes, categories outside the config's classes, label maps without an image, label maps
  with no labelled pixel), or loads in a way worth knowing (grayscale, RGBA, an EXIF orientation tag).

Command line (exit status 1 when an error is found)::

    python -m ropevit_dense.data check data/coco                       # layout detected: annotations/*.json
    python -m ropevit_dense.data check data/ade/ADEChallengeData2016   # images/<split> + annotations/<split>
    python -m ropevit_dense.data check my.json --img-root imgs/ --classes cat,dog
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> what a viewer does to the stored pixels to display them; 5..8 swap width and height.
EXIF_ORIENTATIONS = {2: "mirror left-right", 3: "rotate 180", 4: "mirror top-bottom", 5: "transpose",
                     6: "rotate 90 clockwise", 7: "transverse", 8: "rotate 90 counter-clockwise"}
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_LABEL_MODES = {"L", "P", "I", "I;16", "I;16B", "I;16L", "1"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Problem:
    """One problem of one file. ``severity`` is ``"error"`` or ``"warning"``; ``code`` a stable short name."""

    severity: str
    code: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.code:28s} {self.path}: {self.message}"


@dataclass
class Report:
    """Problems found in a dataset and how much was looked at (``checked``: e.g. images, annotations)."""

    problems: list[Problem] = field(default_factory=list)
    checked: Counter = field(default_factory=Counter)

    def add(self, severity: str, code: str, path: str | Path, message: str) -> None:
        self.problems.append(Problem(severity, code, Path(path), message))

    def extend(self, other: Report) -> None:
        self.problems.extend(other.problems)
        self.checked.update(other.checked)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def summary(self) -> str:
        looked = ", ".join(f"{n} {what}" for what, n in sorted(self.checked.items())) or "nothing"
        counts = Counter(p.code for p in self.problems)
        detail = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
        return (f"checked {looked}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
                + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: stored ``size`` (width, height), PIL ``mode``, EXIF ``orientation`` (or None)."""

    size: tuple[int, int]
    mode: str
    orientation: Optional[int]
    has_transparency: bool = False

    @property
    def displayed_size(self) -> tuple[int, int]:
        """(width, height) once the EXIF orientation is applied, as viewers and mmcv's ``'color'`` flag show it."""
        w, h = self.size
        return (h, w) if self.orientation in (5, 6, 7, 8) else (w, h)


def read_header(path: str | Path) -> ImageHeader:
    """Read size, mode and EXIF orientation without decoding the pixels (raises ``OSError`` if unreadable)."""
    with Image.open(path) as im:
        orientation = im.getexif().get(EXIF_ORIENTATION_TAG)
        transparency = "transparency" in im.info
        return ImageHeader(tuple(im.size), im.mode, int(orientation) if orientation else None, transparency)


def annotation_frame(header: ImageHeader, expected: Optional[tuple[int, int]]) -> str:
    """Which pixel frame annotations of size ``expected`` (width, height) describe.

    Returns ``"stored"`` (the file's pixel array), ``"displayed"`` (after the EXIF orientation), ``"either"`` (no
    orientation to apply, or one that keeps the size, so the size cannot tell), ``"unknown"`` (``expected`` is None)
    or ``"mismatch"`` (neither frame has that size).
    """
    if expected is None:
        return "unknown"
    expected = (int(expected[0]), int(expected[1]))
    stored, displayed = header.size == expected, header.displayed_size == expected
    if stored and displayed:
        return "either"
    return "stored" if stored else "displayed" if displayed else "mismatch"


def jpeg_is_truncated(path: str | Path) -> bool:
    """True for a JPEG whose end-of-image marker is missing from its last KiB (a partial write or download).

    Inside a JPEG's entropy-coded data every 0xFF byte is followed by 0x00 or a restart marker, so 0xFFD9 near the
    end can only be the end-of-image marker. Reads 1 KiB; cheap enough for every file of a large dataset.
    """
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return False
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 1024))
        return b"\xff\xd9" not in f.read()


def check_image(path: Path, report: Report, *, expected: Optional[tuple[int, int]] = None, decode: bool = True,
                mismatch_code: Optional[str] = "size-mismatch", reference: str = "annotations",
                ) -> Optional[ImageHeader]:
    """Add the problems of one image to ``report``; return its header (None when the file cannot be read).

    Args:
        path: the image file.
        report: where problems go.
        expected: (width, height) the annotations were made for (COCO json, or the label map's size).
        decode: also decode every pixel (finds corruption inside the data; slower).
        mismatch_code: problem code when neither frame matches ``expected`` (None: the caller reports it).
        reference: what ``expected`` came from, for the messages.
    """
    report.checked["images"] += 1
    if not path.is_file():
        report.add("error", "missing-image", path, "file does not exist (mmdet / mmseg stop with FileNotFoundError "
                                                   "when the sample comes up)")
        return None
    try:
        header = read_header(path)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        report.add("error", "unreadable-image", path, f"not a readable image ({exc})")
        return None
    if path.suffix.lower() in (".jpg", ".jpeg") and jpeg_is_truncated(path):
        report.add("error", "truncated-image", path, "JPEG without its end-of-image marker: cut short (the missing "
                                                     "rows decode as grey or the loader fails)")
        return header
    if decode:
        try:
            with Image.open(path) as im:
                im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            report.add("error", "truncated-image", path, f"pixel data cannot be decoded ({exc})")
            return header
    if header.mode in _GRAY_MODES:
        report.add("warning", "grayscale-image", path, f"single-channel image (mode {header.mode}); loaded as "
                                                       "3 equal channels with color_type='color'")
    elif header.mode in _ALPHA_MODES or header.has_transparency:
        report.add("warning", "rgba-image", path, f"image with transparency (mode {header.mode}); the alpha "
                                                  "channel is dropped and the colour under it is used")
    frame = annotation_frame(header, expected)
    w, h = header.size
    if frame == "mismatch":
        if mismatch_code is not None:
            shown = f" (displayed {header.displayed_size[0]}x{header.displayed_size[1]})" if header.orientation in (
                5, 6, 7, 8) else ""
            report.add("error", mismatch_code, path, f"{reference}: {expected[0]}x{expected[1]}, file: {w}x{h}"
                                                     f"{shown}; the targets would not line up")
    elif header.orientation in EXIF_ORIENTATIONS:
        what = f"EXIF orientation {header.orientation} ({EXIF_ORIENTATIONS[header.orientation]})"
        if frame == "stored":
            hint = (f"the {reference} size matches the stored {w}x{h} pixels, but mmcv's default "
                    "color_type='color' applies the orientation: load with RoPELoadImageFromFile or "
                    "color_type='color_ignore_orientation'")
        elif frame == "displayed":
            hint = (f"the {reference} size matches the displayed image, so the orientation must be applied (mmcv's "
                    "color_type='color' and RoPELoadImageFromFile do)")
        elif frame == "either":
            hint = (f"the size cannot tell whether the {reference} describes the stored or the displayed pixels; "
                    "RoPELoadImageFromFile assumes the stored ones (exif_orientation='apply' to change)")
        else:
            hint = "no annotation size to compare with"
        report.add("warning", "exif-orientation", path, f"{what}: {hint}")
    return header


def _label_range(num_classes: int, reduce_zero_label: bool, ignore_index: int) -> tuple[np.ndarray, str]:
    if reduce_zero_label:  # stored 0 = "other" -> ignored; k -> k - 1; 255 stays ignored
        valid = np.zeros(256, bool)
        valid[: num_classes + 1] = True
        valid[255] = True
        return valid, f"0..{num_classes} or 255 (reduce_zero_label)"
    valid = np.zeros(max(256, ignore_index + 1, num_classes), bool)
    valid[:num_classes] = True
    valid[ignore_index] = True
    return valid, f"0..{num_classes - 1} or {ignore_index}"


def check_label_map(path: Path, report: Report, *, image_header: Optional[ImageHeader], num_classes: int,
                    reduce_zero_label: bool = True, ignore_index: int = 255, decode: bool = True) -> None:
    """Add the problems of one segmentation label map (mode, size against its image, label values)."""
    report.checked["label maps"] += 1
    try:
        header = read_header(path)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        report.add("error", "unreadable-label-map", path, f"not a readable image ({exc})")
        return
    if header.mode not in _LABEL_MODES:
        report.add("error", "label-map-not-single-channel", path,
                   f"mode {header.mode}: label maps hold one class index per pixel (8-bit 'L' or palette 'P'); a "
                   "colour-coded map makes the loss fail")
        return
    if image_header is not None and header.size not in (image_header.size, image_header.displayed_size):
        w, h = header.size
        iw, ih = image_header.size
        report.add("error", "label-size-mismatch", path, f"label map is {w}x{h}, its image {iw}x{ih}: labels "
                                                         "would be resized and cropped apart from the pixels")
    if not decode:
        return
    try:
        with Image.open(path) as im:
            values = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as exc:
        report.add("error", "unreadable-label-map", path, f"pixel data cannot be decoded ({exc})")
        return
    valid, allowed = _label_range(num_classes, reduce_zero_label, ignore_index)
    present, counts = np.unique(values, return_counts=True)
    bad = [(int(v), int(n)) for v, n in zip(present, counts) if v < 0 or v >= valid.size or not valid[v]]
    if bad:
        shown = ", ".join(f"{v} ({n} px)" for v, n in bad[:8])
        report.add("error", "label-out-of-range", path, f"values {shown} outside {allowed} for {num_classes} "
                                                        "classes (the loss fails on them: 'Target ... out of bounds')")
    ignored = {0, 255} if reduce_zero_label else {ignore_index}
    if set(present.tolist()) <= ignored:
        report.add("warning", "empty-label-map", path, "no labelled pixel (everything is ignored): the image "
                                                       "adds nothing to the loss")


def _is_box(bbox: object) -> bool:
    return (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and np.isfinite(v) for v in bbox))


def check_coco(ann_file: str | Path, img_root: str | Path, *, classes: Optional[Sequence[str]] = None,
               decode: bool = True) -> Report:
    """Check a COCO detection dataset: one annotation file and the folder its ``file_name`` entries are under.

    Args:
        ann_file: the ``instances_*.json`` file.
        img_root: folder of the images (mmdet's ``data_root`` + ``data_prefix.img``).
        classes: the config's class names (``metainfo.classes``); categories outside them are reported.
        decode: decode every image (finds corrupt pixel data; otherwise headers and JPEG end markers only).
    """
    ann_file, img_root, report = Path(ann_file), Path(img_root), Report()
    try:
        data = json.loads(ann_file.read_text())
        images, annotations, categories = data["images"], data.get("annotations", []), data["categories"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.add("error", "bad-annotation-file", ann_file, f"not a COCO annotation file ({exc!r})")
        return report
    cat_ids = {c["id"]: c.get("name", "") for c in categories}
    if len(cat_ids) != len(categories):
        report.add("error", "duplicate-category-id", ann_file, "two categories share an id")
    wanted = None
    if classes is not None:
        wanted = {cid for cid, name in cat_ids.items() if name in set(classes)}
        if not wanted:
            report.add("error", "no-matching-classes", ann_file, f"none of the config's classes {list(classes)} is "
                                                                 f"a category name here ({sorted(cat_ids.values())})")
    by_image: dict[object, list[dict]] = {}
    image_ids = {im.get("id") for im in images}
    if len(image_ids) != len(images):
        report.add("error", "duplicate-image-id", ann_file, "two images share an id")
    for ann in annotations:
        if ann.get("image_id") not in image_ids:
            report.add("error", "orphan-annotation", ann_file, f"annotation {ann.get('id')} refers to image id "
                                                               f"{ann.get('image_id')}, which is not listed")
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    report.checked["annotations"] += len(annotations)
    for im in images:
        path = img_root / str(im.get("file_name", ""))
        size = (im.get("width"), im.get("height"))
        expected = size if all(isinstance(v, int) and v > 0 for v in size) else None
        if expected is None:
            report.add("error", "bad-image-entry", path, f"json width / height {size} are not positive integers")
        check_image(path, report, expected=expected, decode=decode, reference="json width / height")
        anns = [a for a in by_image.get(im.get("id"), []) if not a.get("ignore", False)]
        if not anns:
            report.add("warning", "no-annotations", path, "no annotations: dropped by filter_empty_gt=True, "
                                                          "otherwise trained on as background only")
        for ann in anns:
            _check_annotation(ann, path, expected, cat_ids, wanted, report)
    return report


def _check_annotation(ann: dict, path: Path, size: Optional[tuple[int, int]], cat_ids: dict, wanted: Optional[set],
                      report: Report) -> None:
    aid, cid, bbox = ann.get("id"), ann.get("category_id"), ann.get("bbox")
    if cid not in cat_ids:
        report.add("error", "unknown-category", path, f"annotation {aid} has category_id {cid!r}, which the file "
                                                      f"does not define (ids {sorted(cat_ids)}); mmdet drops it")
    elif wanted is not None and cid not in wanted:
        report.add("warning", "category-not-in-classes", path, f"annotation {aid} is category {cid} "
                                                               f"'{cat_ids[cid]}', not among the config's classes; "
                                                               "mmdet drops it")
    if not _is_box(bbox):
        report.add("error", "bad-box", path, f"annotation {aid} bbox {bbox!r} is not four finite numbers")
        return
    x, y, w, h = bbox
    if w < 1 or h < 1 or ann.get("area", 1) <= 0:
        report.add("warning", "zero-area-box", path, f"annotation {aid} bbox {bbox} (area {ann.get('area')}) has "
                                                     "no extent; mmdet drops it")
    elif size is not None and (x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0):
        report.add("warning", "box-outside-image", path, f"annotation {aid} bbox {bbox} lies outside the "
                                                         f"{size[0]}x{size[1]} image; mmdet drops it")


def check_segmentation(img_dir: str | Path, seg_dir: str | Path, *, num_classes: int = 150,
                       reduce_zero_label: bool = True, ignore_index: int = 255, img_suffix: str = ".jpg",
                       seg_map_suffix: str = ".png", decode: bool = True) -> Report:
    """Check one split of a semantic segmentation dataset laid out as mmseg reads it (ADE20k and others).

    mmseg lists the files ending in ``img_suffix`` under ``img_dir`` (recursively) and expects, for each, the label
    map with the same relative stem and ``seg_map_suffix`` under ``seg_dir``.
    """
    img_dir, seg_dir, report = Path(img_dir), Path(seg_dir), Report()
    for folder in (img_dir, seg_dir):
        if not folder.is_dir():
            report.add("error", "missing-folder", folder, "folder does not exist")
    if report.errors:
        return report
    images = sorted(p for p in img_dir.rglob(f"*{img_suffix}") if p.is_file())
    stems = {p.relative_to(img_dir).as_posix()[: -len(img_suffix)] for p in images}
    for other in sorted(img_dir.rglob("*")):
        if other.is_file() and other.suffix.lower() in _IMAGE_SUFFIXES and not other.name.endswith(img_suffix):
            report.add("warning", "unexpected-suffix", other, f"not listed by mmseg, which takes only "
                                                              f"'*{img_suffix}' files from {img_dir}")
            check_image(other, report, decode=decode)
    for label in sorted(seg_dir.rglob(f"*{seg_map_suffix}")):
        if label.relative_to(seg_dir).as_posix()[: -len(seg_map_suffix)] not in stems:
            report.add("warning", "orphan-label-map", label, f"no image '*{img_suffix}' for this label map: "
                                                             "mmseg skips the pair without a word")
    pairs = [(image, seg_dir / (image.relative_to(img_dir).as_posix()[: -len(img_suffix)] + seg_map_suffix))
             for image in images]
    report.extend(check_segmentation_pairs(pairs, num_classes=num_classes, reduce_zero_label=reduce_zero_label,
                                           ignore_index=ignore_index, decode=decode))
    return report


def check_segmentation_pairs(pairs: Iterable[tuple[str | Path, str | Path]], *, num_classes: int,
                             reduce_zero_label: bool = True, ignore_index: int = 255, decode: bool = True) -> Report:
    """Check (image, label map) pairs: both files, their sizes and EXIF frame, the label map's mode and values."""
    report = Report()
    for image, label in pairs:
        image, label = Path(image), Path(label)
        label_header = None
        if not label.is_file():
            report.add("error", "missing-label-map", image, f"its label map {label} does not exist (mmseg stops "
                                                            "with FileNotFoundError when the sample comes up)")
        else:
            try:
                label_header = read_header(label)
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                label_header = None  # reported by check_label_map
        expected = label_header.size if label_header is not None else None
        # a size disagreement is reported once, against the label map, by check_label_map
        header = check_image(image, report, expected=expected, decode=decode, mismatch_code=None,
                             reference="label map")
        if label.is_file():
            check_label_map(label, report, image_header=header, num_classes=num_classes,
                            reduce_zero_label=reduce_zero_label, ignore_index=ignore_index, decode=decode)
    return report


def _coco_splits(root: Path) -> list[tuple[Path, Path]]:
    files = sorted((root / "annotations").glob("instances_*.json")) or sorted((root / "annotations").glob("*.json"))
    pairs = []
    for ann in files:
        split = ann.stem[len("instances_"):] if ann.stem.startswith("instances_") else ann.stem
        candidates = [root / split, root / "images" / split, root / "images", root]
        pairs.append((ann, next((c for c in candidates if c.is_dir() and c != root), root)))
    return pairs


def detect_format(path: str | Path) -> str:
    """``"coco"`` for a json file or a folder with ``annotations/*.json``; ``"ade20k"`` for a folder with
    ``images/`` and ``annotations/`` sub-folders of images; ``ValueError`` otherwise."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return "coco"
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        return "coco"
    if (path / "images").is_dir() and (path / "annotations").is_dir():
        return "ade20k"
    raise ValueError(f"cannot tell the layout of {path}: expected annotations/*.json (COCO) or images/<split> + "
                     "annotations/<split> (ADE20k); pass --format and the paths")


def check_dataset(path: str | Path, *, fmt: Optional[str] = None, img_root: Optional[str | Path] = None,
                  ann_files: Iterable[str | Path] = (), classes: Optional[Sequence[str]] = None,
                  num_classes: int = 150, reduce_zero_label: bool = True, ignore_index: int = 255,
                  img_suffix: str = ".jpg", seg_map_suffix: str = ".png", decode: bool = True) -> Report:
    """Check a whole dataset in COCO or ADE20k layout (every split found); see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist")
    fmt = fmt or detect_format(path)
    report = Report()
    if fmt == "coco":
        ann_files = [Path(a) for a in ann_files] or ([path] if path.is_file() else [])
        if ann_files:
            if img_root is None:
                raise ValueError("a COCO annotation file needs --img-root (the folder its file_name entries are in)")
            pairs = [(a, Path(img_root)) for a in ann_files]
        else:
            pairs = [(a, Path(img_root) if img_root else root) for a, root in _coco_splits(path)]
        for ann, root in pairs:
            report.extend(check_coco(ann, root, classes=classes, decode=decode))
    elif fmt == "ade20k":
        splits = sorted(p.name for p in (path / "images").iterdir() if p.is_dir())
        if not splits:
            raise ValueError(f"no split folders under {path / 'images'}")
        for split in splits:
            report.extend(check_segmentation(path / "images" / split, path / "annotations" / split,
                                             num_classes=num_classes, reduce_zero_label=reduce_zero_label,
                                             ignore_index=ignore_index, img_suffix=img_suffix,
                                             seg_map_suffix=seg_map_suffix, decode=decode))
    else:
        raise ValueError(f"unknown format {fmt!r}: use 'coco' or 'ade20k'")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m ropevit_dense.data check``: print one line per problem and a summary; 1 if errors, else 0."""
    parser = argparse.ArgumentParser(prog="python -m ropevit_dense.data check",
                                     description="List every problem of a COCO- or ADE20k-layout dataset.")
    parser.add_argument("dataset", help="dataset root (or a COCO annotation json)")
    parser.add_argument("--format", choices=("coco", "ade20k"), help="layout (detected when omitted)")
    parser.add_argument("--ann-file", action="append", default=[], help="COCO annotation file (repeatable)")
    parser.add_argument("--img-root", help="COCO: folder of the images named in the annotation file(s)")
    parser.add_argument("--classes", help="COCO: comma-separated class names of the config (metainfo.classes)")
    parser.add_argument("--num-classes", type=int, default=150, help="segmentation: number of classes (150)")
    parser.add_argument("--no-reduce-zero-label", action="store_true",
                        help="segmentation: label values are class indices as stored (no 0 = 'other' shift)")
    parser.add_argument("--ignore-index", type=int, default=255)
    parser.add_argument("--img-suffix", default=".jpg")
    parser.add_argument("--seg-map-suffix", default=".png")
    parser.add_argument("--quick", action="store_true",
                        help="headers and JPEG end markers only; do not decode pixels or read label values")
    args = parser.parse_args(argv)
    try:
        report = check_dataset(args.dataset, fmt=args.format, img_root=args.img_root, ann_files=args.ann_file,
                               classes=args.classes.split(",") if args.classes else None,
                               num_classes=args.num_classes, reduce_zero_label=not args.no_reduce_zero_label,
                               ignore_index=args.ignore_index, img_suffix=args.img_suffix,
                               seg_map_suffix=args.seg_map_suffix, decode=not args.quick)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    for problem in report.problems:
        print(problem)  # noqa: T201 - the listing is the command's output
    print(report.summary())  # noqa: T201
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
