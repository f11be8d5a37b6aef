"""mmseg models (semantic segmentation) through mmseg's ``MMSegInferencer`` and its visualizer.

Outputs under ``out``:

* ``vis/<stem>.png`` - the image blended with mmseg's drawing of the label map (the dataset's palette and class
  names);
* ``semantic/<stem>.png`` - the label map as a PNG (8-bit, 16-bit for more than 255 classes), in the dataset's
  own label values: mmseg's class index, plus one for datasets read with ``reduce_zero_label`` (ADE20k: 0 stays
  "other"), as mmseg's own ``format_only`` output;
* ``semantic.json`` - the class name of every label value and the label map of every image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core import InferResult, check_outputs, save_png, write_json
from .mm_common import SafeWeightsMixin, config_metainfo, load_config


def _inferencer_class():
    from mmseg.apis import MMSegInferencer

    class SafeSegInferencer(SafeWeightsMixin, MMSegInferencer):
        """``MMSegInferencer`` with the safe checkpoint reading of :class:`SafeWeightsMixin`."""

    return SafeSegInferencer


def _label_offset(cfg: Any) -> int:
    """1 when the test dataset reads its label maps with ``reduce_zero_label`` (the class default of ADE20k)."""
    return int(bool(config_metainfo(cfg).get("reduce_zero_label", False)))


def run_mmseg(config: str, checkpoint: str, files: Sequence[Path], *, out: Path, batch_size: int, device: str,
              force: bool, progress: bool, cfg_options: Sequence[str] = (), opacity: float = 0.6) -> InferResult:
    """Predict with an mmseg model; see the module docstring for what is written."""
    from tqdm import tqdm

    cfg = load_config(config, cfg_options)
    check_outputs([out / f"vis/{f.stem}.png" for f in files] + [out / f"semantic/{f.stem}.png" for f in files]
                  + [out / "semantic.json"], force=force)
    inferencer = _inferencer_class()(model=cfg, weights=checkpoint, device=device)
    classes = list(inferencer.model.dataset_meta["classes"])
    offset = _label_offset(cfg)

    result = InferResult("mmseg", out)
    labels = {}
    bar = tqdm(total=len(files), unit="img", desc="inference", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk = [str(f) for f in files[start: start + batch_size]]
        (data,) = inferencer.preprocess(chunk, batch_size=len(chunk))  # one collated batch of the chunk
        preds = inferencer.forward(data)
        vis = inferencer.visualize(chunk, preds, return_vis=True, opacity=opacity)
        for k, (pred, image) in enumerate(zip(preds, vis)):
            file = files[start + k]
            result.overlays.append(save_png(out / "vis" / f"{file.stem}.png", image))
            label_map = pred.pred_sem_seg.data[0].cpu().numpy().astype("int64") + offset
            png = save_png(out / "semantic" / f"{file.stem}.png", label_map)
            result.results.setdefault("semantic_pngs", []).append(png)
            labels[file.name] = f"semantic/{png.name}"
        bar.update(len(preds))
    bar.close()
    values = {str(i + offset): name for i, name in enumerate(classes)}
    if offset:
        values["0"] = "(ignored: not among the classes)"
    result.results["semantic_json"] = write_json(out / "semantic.json", {"label_values": values, "images": labels})
    return result
