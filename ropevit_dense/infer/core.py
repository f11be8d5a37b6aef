"""Framework-independent parts of :func:`ropevit_dense.infer.run`: which framework a config belongs to, which images
to read, where outputs go (and never over existing files without ``force``), how image and category ids are
chosen for COCO-format results.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

logger = logging.getLogger("ropevit_dense.infer")

PathLike = Union[str, os.PathLike]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FRAMEWORKS = ("mmdet", "mmseg", "detectron2")
# The 80 category ids of COCO's instance annotations, in the order of the 80 class names mmdet and detectron2 use.
COCO80_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
              33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
              60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


class InferError(RuntimeError):
    """A user-facing problem with the inputs of an inference run (config, checkpoint, images, output folder)."""


@dataclass
class InferResult:
    """What one run wrote.

    Attributes:
        framework: ``'mmdet'``, ``'mmseg'`` or ``'detectron2'``.
        out_dir: the output folder.
        overlays: one PNG per input image, in input order.
        results: machine-readable outputs, by kind (``'coco_results'``, ``'image_info'``, ``'panoptic_json'``,
            ``'panoptic_pngs'``, ``'semantic_json'``, ``'semantic_pngs'``).
    """

    framework: str
    out_dir: Path
    overlays: list[Path] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


# -- the config's framework ---------------------------------------------------------------------------------------
def _top_level(tree: ast.Module) -> tuple[set[str], set[str], bool]:
    names, modules, relative = set(), set(), False
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            relative |= node.level > 0
            if node.module:
                modules.add(node.module.split(".")[0])
    return names, modules, relative


def detect_framework(config: PathLike) -> str:
    """``'mmdet'``, ``'mmseg'`` (mmengine configs, by their ``default_scope``) or ``'detectron2'`` (LazyConfig).

    Raises:
        InferError: the file is missing, not Python, or of no known framework.
    """
    path = Path(config).expanduser()
    if not path.is_file():
        raise InferError(f"config not found: '{path}'")
    if path.suffix != ".py":
        raise InferError(f"config '{path}' is not a .py file: mmdet / mmseg configs and detectron2 LazyConfigs are "
                         "Python files")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise InferError(f"config '{path}' is not valid Python: {exc}") from None
    names, modules, relative = _top_level(tree)
    if "_base_" in names or "default_scope" in names:
        from mmengine.config import Config

        scope = Config.fromfile(str(path)).get("default_scope")
        if scope in ("mmdet", "mmseg"):
            return scope
        raise InferError(f"config '{path}' is an mmengine config with default_scope={scope!r}; supported scopes are "
                         "'mmdet' and 'mmseg'")
    if modules & {"detectron2", "detrex"} or (relative and "model" in names | _imported_names(tree)):
        return "detectron2"
    raise InferError(f"config '{path}' is of no known framework: expected an mmengine config of mmdet or mmseg "
                     "(with _base_ or default_scope) or a detectron2 LazyConfig (a `model` made with LazyCall)")


def _imported_names(tree: ast.Module) -> set[str]:
    return {a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names}


# -- input images -------------------------------------------------------------------------------------------------
def collect_images(inputs: Union[PathLike, Sequence[PathLike]]) -> list[Path]:
    """Image files from files and folders (a folder's images sorted by name, not recursive), each checked to decode.

    Raises:
        InferError: a missing path, a file of another format, an undecodable image, a folder with no image,
            no input at all, or two images with the same file stem (their outputs would collide).
    """
    from PIL import Image, UnidentifiedImageError

    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise InferError("no input images given")
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InferError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder '{path}'")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InferError(f"unknown image format '{path.suffix or '(no suffix)'}' of '{path}': expected one "
                                 f"of {', '.join(IMAGE_SUFFIXES)}")
            files.append(path)
        else:
            raise InferError(f"input not found: '{path}'")
    for path in files:
        try:
            with Image.open(path) as img:
                img.verify()
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise InferError(f"cannot decode image '{path}': {exc}") from None
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise InferError(f"two inputs share the name '{path.stem}' ('{stems[path.stem]}', '{path}'): their "
                             "outputs would overwrite each other; rename one or run them separately")
        stems[path.stem] = path
    return files


# -- outputs ------------------------------------------------------------------------------------------------------
def check_outputs(paths: Iterable[Path], *, force: bool) -> None:
    """Refuse to replace existing files unless ``force``; name them."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise InferError(f"outputs exist: {shown}; pass --force to replace them or choose another --out")


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write an RGB ``(H, W, 3)`` uint8 or a label ``(H, W)`` map (8-bit, or 16-bit above 255) as PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 2 and array.max(initial=0) > 255:
        Image.fromarray(array.astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.ascontiguousarray(array).astype(np.uint8)).save(path)
    return path


# -- COCO ids -----------------------------------------------------------------------------------------------------
def load_coco_json(ann_file: Optional[PathLike]) -> Optional[dict]:
    """The ``images`` / ``categories`` of a COCO json (instances or panoptic), or None."""
    if ann_file is None:
        return None
    path = Path(ann_file).expanduser()
    if not path.is_file():
        raise InferError(f"annotation file not found: '{path}'")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InferError(f"annotation file '{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise InferError(f"annotation file '{path}' is not a COCO json (no 'categories' list)")
    return data


def image_ids(files: Sequence[Path], coco: Optional[dict]) -> list[int]:
    """COCO image ids: from the json's ``images`` (by file name), else the file stem when it is a number (COCO's
    ``000000397133.jpg``), else 1, 2, ... in input order."""
    if coco is not None and coco.get("images"):
        by_name = {Path(im["file_name"]).name: int(im["id"]) for im in coco["images"]}
        missing = [f.name for f in files if f.name not in by_name]
        if missing:
            raise InferError(f"images not listed in the annotation file: {', '.join(missing[:5])}")
        return [by_name[f.name] for f in files]
    if all(f.stem.isdigit() for f in files) and len({int(f.stem) for f in files}) == len(files):
        return [int(f.stem) for f in files]
    return list(range(1, len(files) + 1))


def category_ids(classes: Sequence[str], coco: Optional[dict]) -> list[int]:
    """The dataset category id of each label (label ``i`` is ``classes[i]``).

    From the json's categories matched by name (as mmdet's CocoDataset maps them); COCO's own ids when the classes
    are COCO's 80; else ``i + 1`` (logged).
    """
    if coco is not None:
        by_name = {c["name"]: int(c["id"]) for c in coco["categories"]}
        missing = [c for c in classes if c not in by_name]
        if missing:
            raise InferError(f"classes {missing} of the model are not among the annotation file's categories "
                             f"{sorted(by_name)}")
        return [by_name[c] for c in classes]
    if tuple(classes) == _coco80_classes():
        return list(COCO80_IDS)
    logger.warning("no COCO annotation file for the classes %s: category ids are label + 1 (give --ann-file to "
                   "map them to a dataset's ids)", list(classes))
    return list(range(1, len(classes) + 1))


def _coco80_classes() -> tuple[str, ...]:
    try:
        from mmdet.evaluation import get_classes
    except ImportError:
        return ()
    return tuple(get_classes("coco"))


def categories_json(classes: Sequence[str], ids: Sequence[int], things: Optional[Sequence[bool]] = None) -> list:
    cats = [{"id": int(i), "name": str(n)} for i, n in zip(ids, classes)]
    if things is not None:
        for c, t in zip(cats, things):
            c["isthing"] = int(bool(t))
    return cats


def segment_bbox(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` of a boolean mask's pixels."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
