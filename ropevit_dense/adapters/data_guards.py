"""Bad training data meets a clear message: a checked image loader, a label-map check, a pre-flight data check.

What mmdet 3.3 / mmseg 1.2 do with damaged data, and what these add (the dataset doctor,
:mod:`ropevit_dense.data.check`, lists the same problems from the command line):

* **missing / unreadable / truncated image** — ``LoadImageFromFile`` raises (``FileNotFoundError``, or
  ``AssertionError: failed to load image``) when the sample comes up, possibly hours into a run.
  :class:`RoPEDataCheckHook` finds these before the first iteration and stops with every file listed;
  :class:`RoPELoadImageFromFile` with ``on_error='skip'`` drops such a sample with a warning naming the file
  (mmengine's dataset then draws another one), with ``on_error='raise'`` it stops with the file and the problem.
* **EXIF orientation** — mmcv's default ``color_type='color'`` rotates the pixels by the EXIF tag, while COCO
  json ``width`` / ``height`` (and ADE20k label maps) describe a frame of their own: with annotations made on the
  stored pixels the boxes / labels then lie across the wrong content, silently. :class:`RoPELoadImageFromFile`
  compares both frames with the annotation's size and loads the one that matches (see ``exif_orientation``).
* **image size unlike the json's** — trained on silently with misplaced boxes; here an error naming the file.
* **label map of the wrong size, with labels out of range, or colour-coded** — mmseg resizes and crops it apart
  from the image (silent), or fails deep in the loss (``IndexError: Target 199 is out of bounds``, ``only batches
  of spatial targets supported``) whenever a crop happens to include the bad pixels. :class:`RoPECheckSegMap`
  catches each at load time, naming the file.
* grayscale / RGBA images load as 3-channel colour (fine); a warning names each file once.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine import fileio
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..data.check import (
    EXIF_ORIENTATIONS,
    Report,
    annotation_frame,
    check_coco,
    check_segmentation,
    check_segmentation_pairs,
    read_header,
)

_IGNORE_ORIENTATION = {"color": "color_ignore_orientation", "grayscale": "grayscale_ignore_orientation"}
_warned: set[tuple[str, str]] = set()


class BadSampleError(ValueError):
    """A training or test sample that cannot be used; the message names the file and the problem."""


def _warn_once(code: str, path: str, message: str) -> None:
    if (code, path) not in _warned:
        _warned.add((code, path))
        print_log(f"{path}: {code}: {message}", logger="current", level=logging.WARNING)


def _check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


class RoPELoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that loads images in the frame their annotations use and names bad files.

    Args:
        exif_orientation: ``'auto'`` (default): when the file carries an EXIF orientation, load the stored pixels or
            the displayed (re-oriented) image, whichever has the annotation's size (COCO json ``width`` /
            ``height``, or the label map's size); when both have it (a 180-degree turn) the stored pixels; without
            an annotation (inference) the displayed image, as mmcv does. ``'stored'`` / ``'apply'`` force one.
        on_error: ``'raise'`` (default; use it in test pipelines, where a sample cannot be skipped) or ``'skip'``
            (training: return None so that mmengine's dataset draws another sample; a warning names the file).
        **kwargs: ``LoadImageFromFile``'s arguments (``color_type``, ``imdecode_backend``, ``backend_args``, ...).
    """

    def __init__(self, *, exif_orientation: str = "auto", on_error: str = "raise", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if exif_orientation not in ("auto", "stored", "apply"):
            raise ValueError(f"exif_orientation must be 'auto', 'stored' or 'apply', got {exif_orientation!r}")
        self.exif_orientation = exif_orientation
        self.on_error = _check_on_error(on_error)

    def _fail(self, path: str, code: str, message: str) -> None:
        if self.on_error == "skip" or self.ignore_empty:
            _warn_once(code, path, f"{message}; sample skipped")
            return None
        raise BadSampleError(f"{path}: {code}: {message}")

    def _annotation_size(self, results: dict) -> Optional[tuple[int, int]]:
        """(width, height) the annotations are for: COCO's json entry, else the label map's header.

        Raises ``FileNotFoundError`` for a label map that does not exist.
        """
        if results.get("width") and results.get("height"):
            return int(results["width"]), int(results["height"])
        seg = results.get("seg_map_path")
        if not seg:
            return None
        data = fileio.get(seg, backend_args=self.backend_args)
        try:
            return read_header(io.BytesIO(data)).size
        except Exception:  # noqa: BLE001 - a damaged label map is reported by LoadAnnotations / RoPECheckSegMap
            return None

    def _size_mismatch(self, path: str, results: dict, expected: tuple[int, int], got: tuple[int, int]) -> None:
        if results.get("width") and results.get("height"):
            return self._fail(path, "size-mismatch", f"the json says {expected[0]}x{expected[1]}, the file is "
                                                     f"{got[0]}x{got[1]}")
        return self._fail(str(results["seg_map_path"]), "label-size-mismatch", f"label map is {expected[0]}x"
                                                                               f"{expected[1]}, its image {path} "
                                                                               f"{got[0]}x{got[1]}")

    def transform(self, results: dict) -> Optional[dict]:
        path = str(results["img_path"])
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            return self._fail(path, "missing-image", "file does not exist")
        try:
            header = read_header(io.BytesIO(data))
        except Exception:  # noqa: BLE001 - formats PIL cannot open may still decode with cv2
            header = None
        if header is not None and data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
            return self._fail(path, "truncated-image", "JPEG without its end-of-image marker (cut short)")
        try:
            expected = self._annotation_size(results)
        except FileNotFoundError:
            return self._fail(path, "missing-label-map", f"its label map {results['seg_map_path']} does not exist")
        apply = False
        if header is not None and header.orientation in EXIF_ORIENTATIONS:
            frame = annotation_frame(header, expected)
            if frame == "mismatch":
                return self._size_mismatch(path, results, expected, header.size)
            apply = {"apply": True, "stored": False}.get(self.exif_orientation, frame in ("displayed", "unknown"))
            if frame != "unknown":
                what = "applied" if apply else "ignored"
                _warn_once("exif-orientation", path, f"EXIF orientation {header.orientation} "
                                                     f"({EXIF_ORIENTATIONS[header.orientation]}) {what}: the "
                                                     f"annotations are in the {'displayed' if apply else 'stored'} "
                                                     f"frame ({frame} matches their size)")
        flag = self.color_type if apply else _IGNORE_ORIENTATION.get(self.color_type, self.color_type)
        try:
            img = mmcv.imfrombytes(data, flag=flag, backend=self.imdecode_backend)
        except Exception as exc:  # noqa: BLE001 - every decoder failure means the same to the user
            return self._fail(path, "unreadable-image", f"cannot be decoded ({type(exc).__name__}: {exc})")
        if img is None or img.size == 0:
            return self._fail(path, "unreadable-image", "cannot be decoded (not an image, or damaged)")
        if expected is not None and (img.shape[1], img.shape[0]) != expected:
            return self._size_mismatch(path, results, expected, (img.shape[1], img.shape[0]))
        if header is not None and header.mode in ("1", "L", "I", "I;16", "F"):
            _warn_once("grayscale-image", path, f"single-channel image (mode {header.mode}) loaded as "
                                                f"color_type={self.color_type!r}")
        elif header is not None and (header.mode in ("RGBA", "LA", "PA") or header.has_transparency):
            _warn_once("rgba-image", path, f"image with transparency (mode {header.mode}): alpha dropped")
        if self.to_float32:
            img = img.astype(np.float32)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f"{super().__repr__()[:-1]}, exif_orientation={self.exif_orientation!r}, "
                f"on_error={self.on_error!r})")


class RoPECheckSegMap(BaseTransform):
    """Check the label map that mmseg's ``LoadAnnotations`` just loaded; put it right after that transform.

    Args:
        num_classes: classes of the model (labels after ``reduce_zero_label`` must be ``< num_classes``).
        ignore_index: the ignored label (255).
        on_error: ``'raise'`` (default) or ``'skip'`` (training; a warning names the file).
    """

    def __init__(self, *, num_classes: int, ignore_index: int = 255, on_error: str = "raise") -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.on_error = _check_on_error(on_error)

    def _fail(self, path: str, code: str, message: str) -> None:
        if self.on_error == "skip":
            _warn_once(code, path, f"{message}; sample skipped")
            return None
        raise BadSampleError(f"{path}: {code}: {message}")

    def transform(self, results: dict) -> Optional[dict]:
        seg = results.get("gt_seg_map")
        if seg is None:
            return results
        path = str(results.get("seg_map_path"))
        if seg.ndim != 2:
            return self._fail(path, "label-map-not-single-channel", f"label map of shape {seg.shape}: one class "
                                                                    "index per pixel expected, not colours")
        ref = tuple(results.get("ori_shape") or results["img"].shape[:2])[:2]
        if seg.shape != ref:
            return self._fail(path, "label-size-mismatch", f"label map is {seg.shape[1]}x{seg.shape[0]}, its image "
                                                           f"{ref[1]}x{ref[0]}")
        values = np.unique(seg)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            return self._fail(path, "label-out-of-range", f"labels {bad[:8].tolist()} outside 0.."
                                                          f"{self.num_classes - 1} (ignore {self.ignore_index})")
        if values.size == 1 and values[0] == self.ignore_index:
            _warn_once("empty-label-map", path, "no labelled pixel: the image adds nothing to the loss")
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"on_error={self.on_error!r})")


def _leaf_datasets(dataset: Any) -> list:
    inner = getattr(dataset, "datasets", None)  # ConcatDataset
    if isinstance(inner, (list, tuple)):
        return [leaf for d in inner for leaf in _leaf_datasets(d)]
    if hasattr(dataset, "dataset") and not hasattr(dataset, "data_prefix"):  # Repeat / ClassBalanced wrappers
        return _leaf_datasets(dataset.dataset)
    return [dataset]


def check_mm_dataset(dataset: Any, *, decode: bool = False) -> Optional[Report]:
    """Run the dataset doctor on an mmdet COCO-style or mmseg dataset object (None for other kinds)."""
    prefix = getattr(dataset, "data_prefix", None) or {}
    classes = (getattr(dataset, "metainfo", None) or {}).get("classes")
    if getattr(dataset, "ann_file", None) and "img" in prefix and hasattr(dataset, "cat_ids"):
        return check_coco(dataset.ann_file, prefix["img"], classes=classes, decode=decode)
    if "seg_map_path" in prefix and hasattr(dataset, "get_data_info") and classes:
        labels = dict(num_classes=len(classes), reduce_zero_label=bool(getattr(dataset, "reduce_zero_label", False)),
                      ignore_index=int(getattr(dataset, "ignore_index", 255)), decode=decode)
        if not getattr(dataset, "ann_file", None) and hasattr(dataset, "img_suffix"):
            # mmseg lists the image folder: check it the same way, which also finds the files it passes over
            return check_segmentation(prefix["img_path"], prefix["seg_map_path"], img_suffix=dataset.img_suffix,
                                      seg_map_suffix=dataset.seg_map_suffix, **labels)
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        pairs = [(i["img_path"], i["seg_map_path"]) for i in infos if i.get("seg_map_path")]
        return check_segmentation_pairs(pairs, **labels)
    return None


class RoPEDataCheckHook(Hook):
    """Before the first iteration, check every file the training (and optionally validation) data will read.

    Errors (a missing, unreadable or truncated image, a missing / wrong-size / colour label map, an image whose
    size is not the json's, an undefined category; with ``decode``, labels out of range) stop the run at once with
    the files listed; warnings (grayscale, RGBA, EXIF orientation, images without annotations, zero-area boxes,
    categories outside the config's classes, empty label maps) are logged, each naming its file.

    Args:
        decode: decode every image and label map (finds damage inside the pixel data and label values; slower).
            By default only headers and JPEG end markers are read: seconds for COCO-sized sets on a local disk.
        errors: ``'raise'`` (default) or ``'warn'`` (train anyway; damaged samples are then skipped by
            ``RoPELoadImageFromFile(on_error='skip')`` / ``RoPECheckSegMap(on_error='skip')``).
        check_val: also check the validation dataset.
        max_listed: problems listed in the log per kind of message; the doctor command lists them all.
    """

    priority = "VERY_HIGH"

    def __init__(self, *, decode: bool = False, errors: str = "raise", check_val: bool = False,
                 max_listed: int = 20) -> None:
        if errors not in ("raise", "warn"):
            raise ValueError(f"errors must be 'raise' or 'warn', got {errors!r}")
        self.decode, self.errors, self.check_val, self.max_listed = bool(decode), errors, bool(check_val), max_listed

    def before_train(self, runner) -> None:
        loaders = [("train", runner.train_dataloader)]
        if self.check_val and runner.val_dataloader is not None:
            loaders.append(("val", runner.val_dataloader))
        report = Report()
        for split, loader in loaders:
            for dataset in _leaf_datasets(loader.dataset):
                found = check_mm_dataset(dataset, decode=self.decode)
                if found is None:
                    runner.logger.info(f"data check: {type(dataset).__name__} ({split}) is not a COCO-style or mmseg "
                                       "dataset; not checked")
                    continue
                report.extend(found)
        for problem in report.warnings[: self.max_listed]:
            runner.logger.warning(f"data check: {problem}")
        more = len(report.warnings) - self.max_listed
        if more > 0:
            runner.logger.warning(f"data check: {more} more warning(s); `python -m ropevit_dense.data check <dataset>` "
                                  "lists them all")
        runner.logger.info(f"data check: {report.summary()}")
        if report.errors:
            listed = "\n".join(str(p) for p in report.errors[: self.max_listed])
            more = len(report.errors) - self.max_listed
            text = (f"{len(report.errors)} problem(s) in the data would crash or corrupt training:\n{listed}"
                    + (f"\n... and {more} more" if more > 0 else ""))
            if self.errors == "raise":
                raise BadSampleError(text + "\nFix or remove these files (or set RoPEDataCheckHook errors='warn' and "
                                            "skip them with on_error='skip' in the loading transforms).")
            runner.logger.warning(text)
