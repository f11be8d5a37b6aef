"""detectron2 LazyConfig models (boxes, instance masks) with detectron2's own predictor steps and ``Visualizer``.

``DefaultPredictor`` takes a yacs ``CfgNode``; for a LazyConfig the same steps are taken here: the model is
instantiated from ``cfg.model`` (backbone ``pretrained`` weights switched off, the checkpoint replaces them), the
test augmentations of ``cfg.dataloader.test.mapper`` resize each image, the model gets ``{"image", "height",
"width"}`` dicts (several per call with ``batch_size > 1``) and returns ``Instances`` at the input size.

Outputs under ``out``: ``vis/<stem>.png`` (``Visualizer.draw_instance_predictions`` with the dataset's class
names), ``results.json`` (COCO results from detectron2's ``instances_to_coco_json``, category ids mapped back to
the dataset's) and ``image_info.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from .core import (
    InferError,
    InferResult,
    categories_json,
    category_ids,
    check_outputs,
    image_ids,
    load_coco_json,
    save_png,
    write_json,
)
from .mm_common import check_fits, read_checkpoint, state_dict_of

logger = logging.getLogger("ropevit_dense.infer")


def _metadata(cfg: Any, coco: Optional[dict], num_classes: Optional[int]) -> tuple[list[str], list[int]]:
    """Class names and dataset category ids of the model's labels.

    From an annotation file when given (categories in id order, as ``register_coco_instances``), else from the
    test dataset's registered metadata (``thing_classes``, ``thing_dataset_id_to_contiguous_id``).
    """
    from detectron2.data import MetadataCatalog

    if coco is not None:
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        classes = [c["name"] for c in cats]
        return classes, category_ids(classes, coco)
    names = cfg.dataloader.test.dataset.get("names") if "dataloader" in cfg else None
    name = names if isinstance(names, str) else (names[0] if names else None)
    meta = MetadataCatalog.get(name) if name else None
    classes = list(getattr(meta, "thing_classes", []) or [])
    if not classes:
        n = num_classes or 0
        logger.warning("the test dataset '%s' has no registered class names: labels are shown as numbers (give "
                       "--ann-file <COCO json> for names and category ids)", name)
        return [str(i) for i in range(n)], list(range(1, n + 1))
    mapping = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
    if mapping:
        inverse = {v: k for k, v in mapping.items()}
        return classes, [int(inverse[i]) for i in range(len(classes))]
    return classes, category_ids(classes, None)


def run_detectron2(config: str, checkpoint: str, files: Sequence[Path], *, out: Path, score_thr: float,
                   batch_size: int, device: str, force: bool, ann_file: Optional[str], progress: bool,
                   cfg_options: Sequence[str] = ()) -> InferResult:
    """Predict with a detectron2 LazyConfig model; see the module docstring for what is written."""
    try:
        import detectron2.data.transforms as T
        from detectron2.config import LazyConfig, instantiate
        from detectron2.data import detection_utils
        from detectron2.data.catalog import Metadata
        from detectron2.evaluation.coco_evaluation import instances_to_coco_json
        from detectron2.utils.visualizer import Visualizer

        from ..adapters.d2_train import drop_pretrained
    except ImportError as exc:
        raise InferError(f"'{config}' is a detectron2 LazyConfig, but detectron2 cannot be imported ({exc}); it "
                         "is not on PyPI: install it from its source, see configs/detection/detectron2/README.md"
                         ) from None
    from tqdm import tqdm

    check_outputs([out / f"vis/{f.stem}.png" for f in files] + [out / "results.json", out / "image_info.json"],
                  force=force)
    cfg = LazyConfig.load(config)
    if cfg_options:
        cfg = LazyConfig.apply_overrides(cfg, list(cfg_options))
    drop_pretrained(cfg.model)  # the checkpoint holds every weight
    model = instantiate(cfg.model)
    sd = state_dict_of(read_checkpoint(checkpoint))
    check_fits(model, sd, weights=checkpoint, config=config)
    model.load_state_dict(sd)
    model.to(device).eval()

    mapper = cfg.dataloader.test.mapper
    augs = T.AugmentationList([instantiate(a) for a in mapper.get("augmentations", [])])
    image_format = mapper.get("image_format", "BGR")
    coco = load_coco_json(ann_file)
    num_classes = cfg.model.get("roi_heads", {}).get("num_classes") if "roi_heads" in cfg.model else None
    classes, cat_ids = _metadata(cfg, coco, num_classes)
    if num_classes is not None and len(classes) != num_classes:
        raise InferError(f"the model has {num_classes} classes, the class names {len(classes)} ({classes[:5]}...)")
    metadata = Metadata(name="ropevit_dense.infer", thing_classes=classes)
    ids = image_ids(files, coco)

    result = InferResult("detectron2", out)
    detections, images = [], []
    bar = tqdm(total=len(files), unit="img", desc="inference", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk = files[start: start + batch_size]
        originals, inputs = [], []
        for f in chunk:
            image = detection_utils.read_image(str(f), format=image_format)
            aug = T.AugInput(image)
            augs(aug)
            inputs.append({"image": torch.as_tensor(aug.image.astype("float32").transpose(2, 0, 1)),
                           "height": image.shape[0], "width": image.shape[1]})
            originals.append(detection_utils.convert_image_to_rgb(image, image_format))
        with torch.no_grad():
            outputs = model(inputs)
        for k, output in enumerate(outputs):
            i = start + k
            instances = output["instances"].to("cpu")
            instances = instances[instances.scores >= score_thr]
            for det in instances_to_coco_json(instances, ids[i]):
                det["category_id"] = int(cat_ids[det["category_id"]])
                detections.append(det)
            vis = Visualizer(originals[k], metadata).draw_instance_predictions(instances)
            result.overlays.append(save_png(out / "vis" / f"{files[i].stem}.png", vis.get_image()))
            images.append({"id": ids[i], "file_name": files[i].name, "height": originals[k].shape[0],
                           "width": originals[k].shape[1]})
        bar.update(len(chunk))
    bar.close()
    result.results["coco_results"] = write_json(out / "results.json", detections)
    result.results["image_info"] = write_json(out / "image_info.json",
                                              {"images": images, "categories": categories_json(classes, cat_ids)})
    return result
