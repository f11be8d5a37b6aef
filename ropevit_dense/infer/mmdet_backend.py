"""mmdet models (detection, instance and panoptic segmentation) through mmdet's ``DetInferencer`` and its visualizer.

Outputs under ``out``:

* ``vis/<stem>.png`` - the image with mmdet's drawing of the predictions (boxes, masks, class names and scores;
  for panoptic models the panoptic segmentation);
* ``results.json`` - COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``, RLE ``segmentation``
  for masks) of the instances scoring at least the threshold; ``image_info.json`` - the images and categories
  they refer to;
* panoptic models also: ``panoptic/<stem>.png`` (COCO panoptic PNGs, segment id = R + 256 G + 256^2 B, 0 =
  unlabelled) and ``panoptic.json`` (COCO panoptic results: ``annotations`` with ``segments_info``, and
  ``categories`` with ``isthing``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .core import (
    InferError,
    InferResult,
    categories_json,
    category_ids,
    check_outputs,
    image_ids,
    load_coco_json,
    save_png,
    segment_bbox,
    write_json,
)
from .mm_common import SafeWeightsMixin, load_config

logger = logging.getLogger("ropevit_dense.infer")


def _inferencer_class():
    from mmdet.apis import DetInferencer

    class SafeDetInferencer(SafeWeightsMixin, DetInferencer):
        """``DetInferencer`` with the safe checkpoint reading of :class:`SafeWeightsMixin`; annotation loading is
        dropped from the test pipeline (there are no annotations to load for new images)."""

        def _init_pipeline(self, cfg: Any):
            cfg = copy.deepcopy(cfg)
            pipeline = cfg.test_dataloader.dataset.pipeline
            cfg.test_dataloader.dataset.pipeline = [t for t in pipeline if not _loads_annotations(t)]
            return super()._init_pipeline(cfg)

    return SafeDetInferencer


def _loads_annotations(transform: dict) -> bool:
    name = str(transform.get("type", "")).split(".")[-1]
    return name.startswith("Load") and "Annotations" in name


def _evaluator_ann_file(cfg: Any, metric: str) -> Optional[str]:
    """The ``ann_file`` of the config's test metric of type ``metric``, when that file exists."""
    evaluators = cfg.get("test_evaluator", [])
    for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
        if str(ev.get("type", "")).split(".")[-1] == metric and ev.get("ann_file") and Path(ev.ann_file).is_file():
            return ev.ann_file
    return None


def run_mmdet(config: str, checkpoint: str, files: Sequence[Path], *, out: Path, score_thr: float, batch_size: int,
              device: str, force: bool, ann_file: Optional[str], progress: bool,
              cfg_options: Sequence[str] = ()) -> InferResult:
    """Predict with an mmdet model; see the module docstring for what is written."""
    from tqdm import tqdm

    cfg = load_config(config, cfg_options)
    panoptic = bool(cfg.model.get("test_cfg", {}).get("panoptic_on", False))
    names = [f"vis/{f.stem}.png" for f in files] + ["results.json", "image_info.json"]
    if panoptic:
        names += [f"panoptic/{f.stem}.png" for f in files] + ["panoptic.json"]
    check_outputs([out / n for n in names], force=force)

    inferencer = _inferencer_class()(model=cfg, weights=checkpoint, device=device, show_progress=False)
    meta = inferencer.model.dataset_meta
    classes = list(meta["classes"])
    # image ids come from a json the user names; category ids also from the config's test json when it exists
    user_coco = load_coco_json(ann_file)
    coco = user_coco or load_coco_json(_evaluator_ann_file(cfg, "CocoMetric"))
    ids = image_ids(files, user_coco)
    # Mask2Former-style models label things first, then stuff; their instances are things only
    num_things = cfg.model.get("panoptic_fusion_head", {}).get("num_things_classes", len(classes))
    instance_classes = classes[:num_things]
    cat_ids = category_ids(instance_classes, coco)
    pan_coco = load_coco_json(ann_file or _evaluator_ann_file(cfg, "CocoPanopticMetric")) if panoptic else None
    pan_cat_ids = category_ids(classes, pan_coco) if panoptic else []

    result = InferResult("mmdet", out)
    detections, panoptic_annotations, images = [], [], []
    bar = tqdm(total=len(files), unit="img", desc="inference", disable=not progress)
    start = 0
    for chunk_inputs, data in inferencer.preprocess([str(f) for f in files], batch_size=batch_size):
        preds = inferencer.forward(data)
        for k, pred in enumerate(preds):
            i = start + k
            height, width = pred.ori_shape
            images.append({"id": ids[i], "file_name": files[i].name, "height": int(height), "width": int(width)})
            if "pred_instances" in pred:
                detections += _coco_instances(pred.pred_instances, ids[i], cat_ids, score_thr)
            if panoptic:
                entry = _write_panoptic(pred, ids[i], files[i], out, classes, pan_cat_ids, result)
                panoptic_annotations.append(entry)
                if "pred_instances" in pred:
                    del pred.pred_instances  # the overlay shows the panoptic segmentation alone
                if not entry["segments_info"]:  # mmdet's visualizer fails on a map without any segment
                    del pred.pred_panoptic_seg
            elif "pred_instances" in pred:
                pred.pred_instances = pred.pred_instances[pred.pred_instances.scores >= score_thr]
        vis = inferencer.visualize(list(chunk_inputs), preds, return_vis=True, pred_score_thr=score_thr,
                                   no_save_vis=True)
        for k, image in enumerate(vis):
            result.overlays.append(save_png(out / "vis" / f"{files[start + k].stem}.png", image))
        start += len(preds)
        bar.update(len(preds))
    bar.close()

    result.results["coco_results"] = write_json(out / "results.json", detections)
    result.results["image_info"] = write_json(out / "image_info.json", {
        "images": images, "categories": categories_json(instance_classes, cat_ids)})
    if panoptic:
        flags = [i < num_things for i in range(len(classes))]
        result.results["panoptic_json"] = write_json(out / "panoptic.json", {
            "annotations": panoptic_annotations, "images": images,
            "categories": categories_json(classes, pan_cat_ids, flags)})
    return result


def _coco_instances(instances: Any, image_id: int, cat_ids: Sequence[int], score_thr: float) -> list[dict]:
    """COCO result dicts (as mmdet's CocoMetric writes them) of the instances scoring at least ``score_thr``."""
    from mmdet.structures.mask import encode_mask_results

    instances = instances[instances.scores >= score_thr].cpu()
    boxes = instances.bboxes.numpy() if "bboxes" in instances else np.zeros((len(instances), 4))
    masks = encode_mask_results(instances.masks.numpy()) if "masks" in instances else None
    out = []
    for j in range(len(instances)):
        label = int(instances.labels[j])
        if label >= len(cat_ids):
            raise InferError(f"the model predicted label {label}, but only {len(cat_ids)} classes are known")
        x0, y0, x1, y1 = (float(v) for v in boxes[j])
        det = {"image_id": int(image_id), "category_id": int(cat_ids[label]),
               "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
               "score": round(float(instances.scores[j]), 5)}
        if masks is not None:
            rle = dict(masks[j])
            rle["counts"] = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
            det["segmentation"] = rle
        out.append(det)
    return out


def _write_panoptic(pred: Any, image_id: int, file: Path, out: Path, classes: Sequence[str],
                    cat_ids: Sequence[int], result: InferResult) -> dict:
    """One COCO panoptic PNG and its annotation entry.

    mmdet encodes a segment as ``label + instance * INSTANCE_OFFSET`` with label ``len(classes)`` for pixels no
    segment claims; those become 0 (unlabelled), every other value is the segment's id (never 0: things have
    instance >= 1, and a stuff label 0 is shifted by INSTANCE_OFFSET).
    """
    from mmdet.evaluation import INSTANCE_OFFSET
    from panopticapi.utils import id2rgb

    pan = pred.pred_panoptic_seg.sem_seg.cpu().numpy()[0].astype(np.int64)
    labels = pan % INSTANCE_OFFSET
    ids = np.where(labels >= len(classes), 0, np.where(pan == 0, INSTANCE_OFFSET * 1000, pan))
    segments = []
    for seg_id in np.unique(ids):
        if seg_id == 0:
            continue
        mask = ids == seg_id
        label = int(labels[mask][0])
        segments.append({"id": int(seg_id), "category_id": int(cat_ids[label]), "iscrowd": 0,
                         "area": int(mask.sum()), "bbox": segment_bbox(mask)})
    png = save_png(out / "panoptic" / f"{file.stem}.png", id2rgb(ids))
    result.results.setdefault("panoptic_pngs", []).append(png)
    return {"image_id": int(image_id), "file_name": png.name, "segments_info": segments}
