"""Tiny generated datasets in the exact on-disk formats of COCO detection, COCO panoptic and ADE20k.

They are what the tests and the demo train on: real files read by the real loaders (pycocotools, mmdet's
``CocoDataset`` and ``CocoPanopticDataset``, mmseg's ``ADE20KDataset``, detectron2's ``register_coco_instances``),
small enough for a CPU.

Images show a few filled shapes on a textured background. Each shape class has its own colour and form, so a
small detector or segmenter can actually learn them.

Command line::

    python -m ropevit_dense.data coco data/tiny_coco --num-images 16
    python -m ropevit_dense.data ade20k data/tiny_ade20k --num-images 16
    python -m ropevit_dense.data coco-panoptic data/tiny_coco_panoptic --num-images 16
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COCO_SHAPE_CLASSES = ("square", "disk", "triangle")
_SHAPE_COLOURS = {"square": (220, 40, 40), "disk": (40, 200, 60), "triangle": (40, 80, 230)}

# Panoptic stuff classes: a sky above a wavy horizon and the ground below it. Their ids follow the things' and leave
# a gap, as COCO's stuff ids (92-200) follow its thing ids (1-90), so id -> label mapping is exercised.
COCO_PANOPTIC_STUFF_CLASSES = ("sky", "ground")
_STUFF_IDS = {"sky": 101, "ground": 102}
_STUFF_COLOURS = {"sky": (120, 170, 235), "ground": (150, 115, 70)}

ADE20K_NUM_CLASSES = 150
# A handful of ADE20k label values (1..150 on disk; 0 means "other" and becomes 255 under reduce_zero_label).
ADE20K_USED_LABELS = (1, 3, 13, 21, 150)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(90, 160, size=3)
    noise = rng.normal(0.0, 12.0, size=(height, width, 3))
    return np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)


def _shape_polygon(kind: str, x0: float, y0: float, w: float, h: float) -> list[tuple[float, float]]:
    if kind == "square":
        return [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    if kind == "triangle":
        return [(x0 + w / 2, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    angles = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)  # disk as a 24-gon
    cx, cy = x0 + w / 2, y0 + h / 2
    return [(float(cx + w / 2 * np.cos(a)), float(cy + h / 2 * np.sin(a))) for a in angles]


def _place_boxes(rng: np.random.Generator, height: int, width: int, count: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping boxes (x, y, w, h) of 18-45% of the shorter side."""
    boxes: list[tuple[int, int, int, int]] = []
    short = min(height, width)
    for _ in range(count * 20):
        if len(boxes) == count:
            break
        w = int(rng.uniform(0.18, 0.45) * short)
        h = int(np.clip(w * rng.uniform(0.75, 1.33), 0.15 * short, 0.5 * short))
        x = int(rng.integers(0, width - w))
        y = int(rng.integers(0, height - h))
        if all(x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y for bx, by, bw, bh in boxes):
            boxes.append((x, y, w, h))
    return boxes


def _sizes(num_images: int, image_size: Sequence[int] | tuple[int, int], rng: np.random.Generator):
    lo_h, lo_w = image_size
    for _ in range(num_images):
        # vary the size a little so odd, non-square inputs are exercised
        yield int(lo_h + rng.integers(0, lo_h // 4 + 1)), int(lo_w + rng.integers(0, lo_w // 4 + 1))


def make_coco(
    root: str | Path,
    *,
    num_images: int = 8,
    image_size: tuple[int, int] = (96, 128),
    splits: Sequence[str] = ("train", "val"),
    max_objects: int = 3,
    seed: int = 0,
) -> dict[str, Path]:
    """Write a COCO-format detection dataset.

    Layout: ``root/annotations/instances_<split>.json`` and ``root/<split>/<id>.jpg``. Annotations carry
    ``bbox`` (xywh), ``area``, ``iscrowd`` and polygon ``segmentation``; categories are :data:`COCO_SHAPE_CLASSES`
    with ids 1..3.

    Args:
        root: output folder (created; existing files with the same names are replaced, others are left alone).
        num_images: images per split.
        image_size: minimum (height, width); each image adds up to a quarter at random.
        splits: split names, e.g. ``("train", "val")``.
        max_objects: up to this many instances per image (at least one).
        seed: random seed; the same seed writes the same files.

    Returns:
        dict: split name → annotation file path.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if min(image_size) < 32:
        raise ValueError(f"image_size must be at least 32x32, got {image_size}")
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(COCO_SHAPE_CLASSES)]
    out: dict[str, Path] = {}
    for split_index, split in enumerate(splits):
        rng = np.random.default_rng(seed * 1000 + split_index)
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id, (height, width) in enumerate(_sizes(num_images, image_size, rng), start=1):
            canvas = Image.fromarray(_background(rng, height, width))
            draw = ImageDraw.Draw(canvas)
            for x, y, w, h in _place_boxes(rng, height, width, int(rng.integers(1, max_objects + 1))):
                label = int(rng.integers(0, len(COCO_SHAPE_CLASSES)))
                kind = COCO_SHAPE_CLASSES[label]
                polygon = _shape_polygon(kind, x, y, w, h)
                draw.polygon(polygon, fill=_SHAPE_COLOURS[kind])
                xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
                bx, by = min(xs), min(ys)
                bw, bh = max(xs) - bx, max(ys) - by
                area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                    "bbox": [round(bx, 2), round(by, 2), round(bw, 2), round(bh, 2)], "area": round(area, 2),
                    "iscrowd": 0, "segmentation": [[round(v, 2) for p in polygon for v in p]],
                })
            file_name = f"{image_id:06d}.jpg"
            canvas.save(root / split / file_name, quality=95)
            images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        ann_file = root / "annotations" / f"instances_{split}.json"
        ann_file.write_text(json.dumps({
            "info": {"description": "ropevit-dense synthetic shapes", "version": "1.0"},
            "licenses": [], "images": images, "annotations": annotations, "categories": categories,
        }))
        out[split] = ann_file
    return out


def make_ade20k(
    root: str | Path,
    *,
    num_images: int = 8,
    image_size: tuple[int, int] = (96, 128),
    splits: Sequence[str] = ("training", "validation"),
    seed: int = 0,
) -> dict[str, tuple[Path, Path]]:
    """Write an ADE20k-format semantic segmentation dataset.

    Layout (as ADEChallengeData2016): ``root/images/<split>/ADE_<split>_<n>.jpg`` and
    ``root/annotations/<split>/ADE_<split>_<n>.png``. Label maps are 8-bit PNGs with values 0..150, where 0 is
    "other" (ignored after ``reduce_zero_label``, which maps 0→255 and k→k-1). The background is label 0 with
    a few shapes of labels from :data:`ADE20K_USED_LABELS`; each label has its own colour.

    Returns:
        dict: split name → (image folder, annotation folder).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if min(image_size) < 32:
        raise ValueError(f"image_size must be at least 32x32, got {image_size}")
    root = Path(root)
    palette_rng = np.random.default_rng(12345)
    colours = {label: tuple(int(c) for c in palette_rng.integers(0, 256, size=3)) for label in ADE20K_USED_LABELS}
    kinds = ("square", "disk", "triangle")
    out: dict[str, tuple[Path, Path]] = {}
    for split_index, split in enumerate(splits):
        rng = np.random.default_rng(seed * 1000 + 500 + split_index)
        img_dir, ann_dir = root / "images" / split, root / "annotations" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for index, (height, width) in enumerate(_sizes(num_images, image_size, rng), start=1):
            canvas = Image.fromarray(_background(rng, height, width))
            label_map = Image.new("L", (width, height), 0)
            draw, draw_label = ImageDraw.Draw(canvas), ImageDraw.Draw(label_map)
            # one large stripe so every image also has a big region of one class
            stripe_label = int(rng.choice(ADE20K_USED_LABELS))
            y0 = int(rng.integers(0, height // 2))
            stripe = [(0, y0), (width, y0), (width, y0 + height // 3), (0, y0 + height // 3)]
            draw.polygon(stripe, fill=colours[stripe_label])
            draw_label.polygon(stripe, fill=stripe_label)
            for x, y, w, h in _place_boxes(rng, height, width, int(rng.integers(2, 5))):
                label = int(rng.choice(ADE20K_USED_LABELS))
                polygon = _shape_polygon(kinds[int(rng.integers(0, 3))], x, y, w, h)
                draw.polygon(polygon, fill=colours[label])
                draw_label.polygon(polygon, fill=label)
            stem = f"ADE_{split}_{index:08d}"
            canvas.save(img_dir / f"{stem}.jpg", quality=95)
            label_map.save(ann_dir / f"{stem}.png")
        out[split] = (img_dir, ann_dir)
    return out


def coco_panoptic_categories() -> list[dict]:
    """Categories of :func:`make_coco_panoptic`: the three shapes as things (ids 1-3), sky and ground as stuff."""
    things = [{"id": i + 1, "name": n, "supercategory": "shape", "isthing": 1, "color": list(_SHAPE_COLOURS[n])}
              for i, n in enumerate(COCO_SHAPE_CLASSES)]
    stuff = [{"id": _STUFF_IDS[n], "name": n, "supercategory": "scene", "isthing": 0, "color": list(_STUFF_COLOURS[n])}
             for n in COCO_PANOPTIC_STUFF_CLASSES]
    return things + stuff


def _stuff_layout(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool map, True above a wavy horizon (sky), False below it (ground)."""
    y0 = rng.uniform(0.3, 0.65) * height
    amplitude, period, phase = rng.uniform(0.02, 0.08) * height, rng.uniform(0.5, 1.5) * width, rng.uniform(0, 6.3)
    horizon = y0 + amplitude * np.sin(2 * np.pi * np.arange(width) / period + phase)
    return np.arange(height)[:, None] < horizon[None, :]


def _id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG encoding of segment ids: ``id = R + 256 G + 256^2 B``; ``(H, W)`` -> ``(H, W, 3)`` uint8."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def _segment_info(segment_id: int, category_id: int, mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {"id": segment_id, "category_id": category_id, "iscrowd": 0, "area": int(mask.sum()),
            "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]}


def make_coco_panoptic(
    root: str | Path,
    *,
    num_images: int = 8,
    image_size: tuple[int, int] = (96, 128),
    splits: Sequence[str] = ("train", "val"),
    max_objects: int = 3,
    seed: int = 0,
) -> dict[str, Path]:
    """Write a COCO panoptic segmentation dataset, with the instance annotations of its things.

    Layout (as COCO 2017)::

        root/<split>/<id>.jpg
        root/annotations/panoptic_<split>.json      images, annotations (segments_info per image), categories
        root/annotations/panoptic_<split>/<id>.png  segment ids in RGB: id = R + 256 G + 256^2 B, 0 = unlabelled
        root/annotations/instances_<split>.json     the things as COCO instances (polygons), for box / mask AP

    Every pixel belongs to one segment: sky or ground (stuff, :data:`COCO_PANOPTIC_STUFF_CLASSES`, ids 101 / 102)
    or a shape in front of them (things, :data:`COCO_SHAPE_CLASSES`, ids 1-3). Segment ids are random, distinct
    within an image, as in COCO's files.

    Args:
        root: output folder (created; files with the same names are replaced, others are left alone).
        num_images: images per split.
        image_size: minimum (height, width); each image adds up to a quarter at random.
        splits: split names.
        max_objects: up to this many things per image (at least one).
        seed: random seed; the same seed writes the same files.

    Returns:
        dict: split name -> panoptic annotation file path.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if min(image_size) < 32:
        raise ValueError(f"image_size must be at least 32x32, got {image_size}")
    root = Path(root)
    categories = coco_panoptic_categories()
    out: dict[str, Path] = {}
    for split_index, split in enumerate(splits):
        rng = np.random.default_rng(seed * 1000 + 700 + split_index)
        seg_dir = root / "annotations" / f"panoptic_{split}"
        seg_dir.mkdir(parents=True, exist_ok=True)
        (root / split).mkdir(parents=True, exist_ok=True)
        images, panoptic, instances = [], [], []
        for image_id, (height, width) in enumerate(_sizes(num_images, image_size, rng), start=1):
            sky = _stuff_layout(rng, height, width)
            pixels = _background(rng, height, width).astype(np.float32)
            for name, where in (("sky", sky), ("ground", ~sky)):
                pixels[where] = 0.35 * pixels[where] + 0.65 * np.array(_STUFF_COLOURS[name], np.float32)
            canvas = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
            ids = 1 + rng.choice(256 ** 3 - 1, size=2 + max_objects, replace=False)
            id_map = Image.fromarray(np.where(sky, ids[0], ids[1]).astype(np.int32))  # mode "I"
            draw, draw_ids = ImageDraw.Draw(canvas), ImageDraw.Draw(id_map)
            things = []
            for k, (x, y, w, h) in enumerate(_place_boxes(rng, height, width, int(rng.integers(1, max_objects + 1)))):
                label = int(rng.integers(0, len(COCO_SHAPE_CLASSES)))
                polygon = _shape_polygon(COCO_SHAPE_CLASSES[label], x, y, w, h)
                draw.polygon(polygon, fill=_SHAPE_COLOURS[COCO_SHAPE_CLASSES[label]])
                draw_ids.polygon(polygon, fill=int(ids[2 + k]))
                things.append((int(ids[2 + k]), label + 1, polygon))
            id_array = np.asarray(id_map, dtype=np.int64)
            segments = [_segment_info(int(ids[i]), _STUFF_IDS[n], id_array == ids[i])
                        for i, n in enumerate(COCO_PANOPTIC_STUFF_CLASSES) if (id_array == ids[i]).any()]
            segments += [_segment_info(sid, cat, id_array == sid) for sid, cat, _ in things]
            stem = f"{image_id:06d}"
            canvas.save(root / split / f"{stem}.jpg", quality=95)
            Image.fromarray(_id_to_rgb(id_array)).save(seg_dir / f"{stem}.png")
            images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": height, "width": width})
            panoptic.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
            for _, cat, polygon in things:
                xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
                area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
                instances.append({
                    "id": len(instances) + 1, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                    "bbox": [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2),
                             round(max(ys) - min(ys), 2)],
                    "area": round(area, 2), "segmentation": [[round(v, 2) for p in polygon for v in p]],
                })
        info = {"description": "ropevit-dense synthetic shapes, panoptic", "version": "1.0"}
        ann_file = root / "annotations" / f"panoptic_{split}.json"
        ann_file.write_text(json.dumps({"info": info, "licenses": [], "images": images, "annotations": panoptic,
                                        "categories": categories}))
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps({
            "info": info, "licenses": [], "images": images, "annotations": instances,
            "categories": [{k: c[k] for k in ("id", "name", "supercategory")} for c in categories if c["isthing"]],
        }))
        out[split] = ann_file
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny dataset in COCO, COCO panoptic or ADE20k format.")
    parser.add_argument("format", choices=("coco", "coco-panoptic", "ade20k"))
    parser.add_argument("root", help="output folder")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    maker = {"coco": make_coco, "coco-panoptic": make_coco_panoptic, "ade20k": make_ade20k}[args.format]
    try:
        result = maker(args.root, num_images=args.num_images, image_size=(args.height, args.width), seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    for split, where in result.items():
        print(f"{split}: {where}")  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    sys.exit(main())
