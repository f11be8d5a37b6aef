"""Every detectron2 config's model trains one step in fp32 and under CPU bf16 autocast: finite losses, and a
gradient for every trainable parameter (so DDP with ``find_unused_parameters=False`` cannot fail). AMP asked for
without a GPU stops with a clear error before anything is built.

The real configs are built with their structure (depth, windows, global blocks, position encoding, pyramid,
number of head convs, cascade stages) and narrow widths, so one step takes seconds on a CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "detection" / "detectron2"
SKIP_REASON = ("detectron2 is not installed (it is not on PyPI): install it from its source, "
               "see configs/detection/detectron2/README.md")
WIDTH = 16  # pyramid / head channels of the narrow builds
# one Mask R-CNN and one Cascade Mask R-CNN (the other position encoding and size) in the default run
QUICK = {"tiny/mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py", "mask_rcnn_vitdet_b_rope_mixed_ape_100ep.py",
         "cascade_mask_rcnn_vitdet_l_rope_axial_100ep.py"}


def _configs() -> list[str]:
    paths = sorted(p for p in CONFIGS.rglob("*.py") if p.parent.name != "common" and not p.name.startswith("dino_"))
    return [str(p.relative_to(CONFIGS)) for p in paths]


@pytest.fixture(scope="module")
def d2():
    pytest.importorskip("detectron2", reason=SKIP_REASON)
    from ropevit_dense.adapters import d2_engine

    return d2_engine


def _narrow(model_cfg) -> None:
    """Narrow widths, same structure: ViT width 4 per head, WIDTH-channel pyramid and head convs, fewer samples."""
    net = model_cfg.backbone.net
    net.update(pretrained=None, embed_dim=4 * net.num_heads)
    model_cfg.backbone.update(out_channels=WIDTH, square_pad=128)
    rpn = model_cfg.proposal_generator
    rpn.head.in_channels = WIDTH
    rpn.update(pre_nms_topk=(200, 100), post_nms_topk=(50, 50), batch_size_per_image=64)
    heads = model_cfg.roi_heads
    heads.batch_size_per_image = 32
    cascade = "box_heads" in heads
    for box_head in (heads.box_heads if cascade else [heads.box_head]):
        box_head.update(conv_dims=[WIDTH] * len(box_head.conv_dims), fc_dims=[2 * WIDTH] * len(box_head.fc_dims))
        box_head.input_shape.channels = WIDTH
    for predictor in (heads.box_predictors if cascade else [heads.box_predictor]):
        predictor.input_shape.channels = 2 * WIDTH
    heads.mask_head.conv_dims = [WIDTH] * len(heads.mask_head.conv_dims)
    heads.mask_head.input_shape.channels = WIDTH


def _sample(h: int, w: int, classes: tuple[int, int]) -> dict:
    from detectron2.structures import BitMasks, Boxes, Instances

    boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 10.0, 70.0, 40.0]])
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
        mask[y0:y1, x0:x1] = True
    instances = Instances((h, w), gt_boxes=Boxes(boxes), gt_classes=torch.tensor(classes), gt_masks=BitMasks(masks))
    return {"image": torch.randint(0, 255, (3, h, w)).float(), "instances": instances, "height": h, "width": w}


def _one_step(model, batch, *, bf16: bool) -> dict[str, float]:
    from detectron2.utils.events import EventStorage

    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same sampled anchors and proposals in both precisions
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        losses = model(batch)
    sum(losses.values()).backward()
    return {k: v.item() for k, v in losses.items()}


def _check_config(name: str) -> None:
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(CONFIGS / name))
    full = LazyConfig.load(str(CONFIGS / name)).model
    _narrow(cfg.model)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    net = model.backbone.net
    assert net.depth == full.backbone.net.depth and net.rope_type == full.backbone.net.rope_type
    assert [b.window_size == 0 for b in net.blocks] == [i in full.backbone.net.global_block_indexes
                                                          for i in range(net.depth)]
    num_classes = cfg.model.roi_heads.num_classes
    batch = [_sample(96, 112, (0, num_classes - 1)), _sample(80, 128, (1, 0))]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    totals = {}
    for bf16 in (False, True):
        losses = _one_step(model, batch, bf16=bf16)
        mode = "bf16" if bf16 else "fp32"
        assert losses and all(math.isfinite(v) for v in losses.values()), (name, mode, losses)
        grads = dict(model.named_parameters())
        no_grad = [n for n in trainable if grads[n].grad is None]
        assert not no_grad, f"{name} ({mode}): parameters without a gradient: {no_grad[:8]}"
        bad = [n for n in trainable if not torch.isfinite(grads[n].grad).all()]
        assert not bad, f"{name} ({mode}): non-finite gradients in {bad[:8]}"
        totals[mode] = sum(losses.values())
    assert math.isclose(totals["bf16"], totals["fp32"], rel_tol=0.05), (name, totals)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_config_trains_a_step_in_fp32_and_bf16_with_every_gradient(d2, name):
    _check_config(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in _configs() if n not in QUICK])
def test_every_other_config_trains_a_step_in_fp32_and_bf16_with_every_gradient(d2, name):
    _check_config(name)


def test_amp_without_a_gpu_is_a_clear_error(d2, tiny_coco, tmp_path):
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(str(CONFIGS / "tiny" / "mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py"))
    cfg.train.amp.enabled = True
    with pytest.raises(ValueError, match=r"train.amp.enabled=True .* needs a CUDA device, but train.device is 'cpu'"):
        d2.check_amp(cfg)
    cfg.train.device = "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available.*train.amp.enabled=False"):
            d2.check_amp(cfg)
    cfg.train.amp.enabled = False
    d2.check_amp(cfg)  # fp32: nothing to check

    import importlib.util

    spec = importlib.util.spec_from_file_location("tool_train_net_d2", REPO / "tools" / "train_net_d2.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    argv = ["--config-file", str(CONFIGS / "tiny" / "mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py"),
            "--coco-dataset", "tiny_coco_train", str(tiny_coco / "annotations" / "instances_train.json"),
            str(tiny_coco / "train"), f"train.output_dir={tmp_path / 'run'}", "train.amp.enabled=True"]
    with pytest.raises(ValueError, match="needs a CUDA device"):
        tool.main(tool.build_parser().parse_args(argv))
    assert not (tmp_path / "run").exists()  # refused before anything is written
