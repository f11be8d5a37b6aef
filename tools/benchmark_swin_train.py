#!/usr/bin/env python
"""Training cost of RoPE-Swin against mmdet's own Swin Transformer (relative position bias) of the same size.

Times one training step (forward, a loss over every stage output, backward) of each backbone, round-robin in one
process so drifts of a shared machine hit all of them alike, and prints a markdown table with the ratio to mmdet's
Swin. With ``--dino`` it times whole DINO training iterations (backbone + ChannelMapper + 4-scale DINO head on a
generated COCO-style batch) instead.

    python tools/benchmark_swin_train.py --size 512 --batch 2 --repeats 10
    python tools/benchmark_swin_train.py --dino --size 384 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

PRESETS = {
    "t": dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "s": dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "b": dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}
OURS = {  # row name -> RoPESwin position arguments
    "RoPE-Swin mixed": dict(rope_type="mixed", use_rpb=False),
    "RoPE-Swin axial": dict(rope_type="axial", use_rpb=False),
    "RoPE-Swin mixed + RPB": dict(rope_type="mixed", use_rpb=True),
    "RoPE-Swin RPB only": dict(rope_type=None, use_rpb=True),
}


def backbones(size: str, out_indices=(1, 2, 3)) -> dict[str, torch.nn.Module]:
    from mmdet.models.backbones import SwinTransformer

    from ropevit_dense import RoPESwin

    p = PRESETS[size]
    models = {"mmdet Swin (RPB)": SwinTransformer(embed_dims=p["embed_dims"], depths=p["depths"],
                                                  num_heads=p["num_heads"], window_size=7, out_indices=out_indices)}
    for name, pos in OURS.items():
        models[name] = RoPESwin(embed_dim=p["embed_dims"], depths=p["depths"], num_heads=p["num_heads"],
                                window_size=7, out_indices=out_indices, **pos)
    return models


def dino_models(size: str) -> dict[str, torch.nn.Module]:
    from pathlib import Path

    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import ropevit_dense.adapters.mmdet  # noqa: F401

    init_default_scope("mmdet")
    root = Path(__file__).resolve().parents[1] / "configs" / "detection" / "mmdet"
    cfg = Config.fromfile(str(root / f"dino-4scale_ropeswin-{size}-p4-w7-mixed_8xb2-90k_coco.py"))
    out = {}
    p = PRESETS[size]
    for name, backbone in [("mmdet Swin (RPB)", dict(type="mmdet.SwinTransformer", embed_dims=p["embed_dims"],
                                                     depths=p["depths"], num_heads=p["num_heads"], window_size=7,
                                                     out_indices=(1, 2, 3)))] + [
            (n, dict(type="RoPESwin", embed_dim=p["embed_dims"], depths=p["depths"], num_heads=p["num_heads"],
                     window_size=7, out_indices=(1, 2, 3), **pos)) for n, pos in OURS.items()]:
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = backbone
        out[name] = MODELS.build(model_cfg)
    return out


def dino_batch(model, size: int, batch: int):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size), batch_input_shape=(size, size)))
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = torch.rand(4, 2, generator=g) * size * 0.3 + 8
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, 80, (4,),
                                                                                                  generator=g))
        samples.append(s)
    return torch.randn(batch, 3, size, size, generator=g), samples


def step(model, x, samples, dino: bool) -> None:
    torch.manual_seed(0)  # the same denoising queries and drop-path draws for every model and repeat
    if dino:
        losses = model.loss(x, samples)
        loss = sum(v.sum() for k, v in losses.items() if "loss" in k)
    else:
        loss = sum(o.square().mean() for o in model(x))
    loss.backward()
    model.zero_grad(set_to_none=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="t", choices=sorted(PRESETS))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dino", action="store_true", help="time whole DINO training iterations")
    args = p.parse_args(argv)
    if args.size < 64 or args.repeats < 1 or args.batch < 1:
        p.error("--size must be >= 64, --repeats and --batch >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = dino_models(args.arch) if args.dino else backbones(args.arch)
    for m in models.values():
        m.train()
    x, samples = dino_batch(next(iter(models.values())), args.size, args.batch) if args.dino else (
        torch.randn(args.batch, 3, args.size, args.size), None)
    for m in models.values():  # warm-up
        step(m, x, samples, args.dino)
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            step(m, x, samples, args.dino)
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["mmdet Swin (RPB)"])
    what = "DINO iteration" if args.dino else "backbone forward + backward"
    print(f"Swin-{args.arch.upper()}, {what}, batch {args.batch} at {args.size}x{args.size}, "
          f"{args.threads} threads, median of {args.repeats}\n")
    print("| backbone | median step (s) | x mmdet Swin |\n|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {med / ref:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
