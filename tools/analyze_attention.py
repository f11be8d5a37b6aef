#!/usr/bin/env python
"""Per-layer attention distance and attention entropy of a RoPE-ViT / RoPE-Swin backbone on a folder of images.

The two statistics of the RoPE-ViT paper (Heo et al., ECCV 2024, section 3.3.3), per layer and input resolution:

* attention distance: for each query, the sum over keys of (attention probability x Euclidean distance between the
  query's and the key's token positions), averaged over heads, queries and images. Distances are in tokens of the
  layer's own grid (patches for a ViT; stage tokens for Swin) or, with ``--unit pixels``, in input pixels (tokens
  times the layer's stride). Prefix (cls) tokens count with distance 0 to every token, as in the paper: their
  query rows and key columns are included with distance 0.
* attention entropy: ``-sum_k p log p`` (natural log) per query, averaged the same way.

Window blocks (ViTDet windows, Swin) measure within their windows, with window-local positions; queries on padded
tokens are left out, padded keys have probability 0 (as in the model). The last layer is left out of the plots, as
in the paper (it is in the CSV).

How the probabilities are obtained: forward hooks on each block's attention module re-compute its softmax from
the module's own inputs (its own ``Attention.project``: the q / k / v projections rotated with the RoPE table
handed to it; then its mask and relative position bias); the model's forward path is unchanged. Each hook checks
that the re-computed attention reproduces the module's output, so the statistics are those of the computation the
model ran.

Images: ``.jpg`` / ``.jpeg`` / ``.png`` files of a folder, resized to each resolution (bicubic, no crop) and
normalised with the ImageNet mean and std.

Example::

    python tools/analyze_attention.py --backbone rope_mixed_deit_base_patch16_LS --checkpoint ckpt.bin \\
        --images val_images/ --resolutions 224,320,448 --csv attn.csv --plot attn.png
"""

from __future__ import annotations

import argparse
import csv
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ropevit_dense import RoPESwin, RoPEViT
from ropevit_dense.checkpoints import CheckpointError
from ropevit_dense.layers import Attention, valid_windows
from ropevit_dense.rope import grid_coords
from ropevit_dense.tools_utils import (
    ToolError,
    add_backbone_arguments,
    atomic_output,
    build_backbone,
    check_output,
    describe_backbone,
    format_size,
    list_images,
    load_image,
    parse_size,
)

CHUNK_ELEMENTS = 2 ** 24  # attention probabilities re-computed at once (128 MB in float64)
SELF_CHECK_RTOL = 1e-3


@dataclass
class LayerLayout:
    """How the tokens handed to one block's attention are arranged."""

    hw: tuple[int, int]  # the block's token grid (before window padding)
    window: int  # 0 = global attention over the grid (plus prefix tokens)
    shift: int  # Swin's cyclic shift of the windows
    prefix: int  # leading tokens without a grid position (cls)
    stride: int  # input pixels per token of this grid


@dataclass
class LayerSums:
    """Running sums of one layer."""

    block: str
    distance: float = 0.0
    entropy: float = 0.0
    count: int = 0


def distance_matrix(layout: LayerLayout, unit: str, device: torch.device) -> torch.Tensor:
    """``(N, N)`` Euclidean distances between the tokens of one attention call (prefix rows / columns are 0)."""
    side = (layout.window, layout.window) if layout.window else layout.hw
    xy = grid_coords(*side, device=device).double()
    if unit == "pixels":
        xy = xy * layout.stride
    d = torch.cdist(xy, xy)
    if layout.prefix:
        d = torch.nn.functional.pad(d, (layout.prefix, 0, layout.prefix, 0))
    return d


def query_mask(layout: LayerLayout, batch: int, device: torch.device) -> Optional[torch.Tensor]:
    """``(batch * windows, N)`` True for real (not padded) query tokens; None when every token is real."""
    if not layout.window:
        return None
    valid = valid_windows(layout.hw, layout.window, layout.shift, device=device)
    return None if bool(valid.all()) else valid.repeat(batch, 1)


def probabilities(q: torch.Tensor, k: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Softmax attention ``(B, heads, N, N)`` in float64, with a boolean (True = attend) or additive mask."""
    logits = (q.double() @ k.double().transpose(-2, -1)) * q.shape[-1] ** -0.5
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask.double()
    return logits.softmax(dim=-1)


def _with_bias(mask: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A mask combined with an additive bias (relative positions), as the attention module combines them."""
    if bias is None:
        return mask
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else bias + mask


def _rows_of(mask: Optional[torch.Tensor], batch: slice, heads: slice, full_batch: int, num_heads: int
             ) -> Optional[torch.Tensor]:
    """The part of a broadcastable ``(B or 1, heads or 1, N or 1, N)`` mask that belongs to a batch / head chunk."""
    if mask is None:
        return None
    if mask.shape[0] == full_batch:
        mask = mask[batch]
    if mask.ndim == 4 and mask.shape[1] == num_heads:
        mask = mask[:, heads]
    return mask


class AttentionStatistics:
    """Context manager that accumulates per-layer attention distance and entropy over the forwards it sees.

    Args:
        model (RoPEViT | RoPESwin): the backbone (eval mode).
        unit (str): ``'patches'`` (tokens of the layer's grid) or ``'pixels'``. Default: ``'patches'``.

    Example::

        with AttentionStatistics(model) as stats:
            model(images)
        rows = stats.results()   # [(layer, block name, distance, entropy), ...]
    """

    def __init__(self, model: nn.Module, unit: str = "patches") -> None:
        if unit not in ("patches", "pixels"):
            raise ValueError(f"unit must be 'patches' or 'pixels', got {unit!r}")
        self.model, self.unit = model, unit
        self.blocks = self._blocks(model)
        self.sums = [LayerSums(name) for name, _, _ in self.blocks]
        self._layouts: dict[int, LayerLayout] = {}
        self._distances: dict[tuple, torch.Tensor] = {}
        self._handles: list = []
        self._signature = inspect.signature(Attention.forward)

    @staticmethod
    def _blocks(model: nn.Module) -> list[tuple[str, nn.Module, int]]:
        if isinstance(model, RoPEViT):
            return [(f"blocks.{i}", b, model.patch_size) for i, b in enumerate(model.blocks)]
        if isinstance(model, RoPESwin):
            patch = model.patch_embed.patch_size
            return [(f"layers.{s}.blocks.{j}", b, patch * 2 ** s) for s, stage in enumerate(model.layers)
                    for j, b in enumerate(stage.blocks)]
        raise ToolError(f"attention statistics support RoPEViT and RoPESwin, got {type(model).__name__}")

    def __enter__(self) -> AttentionStatistics:
        for index, (_, block, stride) in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(self._layout_hook(index, block, stride)))
            self._handles.append(block.attn.register_forward_hook(self._attention_hook(index), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _layout_hook(self, index: int, block: nn.Module, stride: int):
        def hook(_module, args):
            if isinstance(self.model, RoPEViT):  # Block.forward(x (B, N, C), hw, rope, mask)
                hw, w = tuple(args[1]), block.window_size
                layout = LayerLayout(hw, w, 0, 0 if w else self.model.num_prefix_tokens, stride)
            else:  # SwinBlock.forward(x (B, H, W, C), rope, masks)
                hw = tuple(args[0].shape[1:3])
                layout = LayerLayout(hw, block.window_size, block.shift_for(hw), 0, stride)
            self._layouts[index] = layout

        return hook

    def _attention_hook(self, index: int):
        def hook(module, args, kwargs, output):
            bound = self._signature.bind(module, *args, **kwargs)
            bound.apply_defaults()
            self._accumulate(index, module, bound.arguments["x"], bound.arguments["rope"],
                             bound.arguments["attn_mask"], bound.arguments["hw"], output)

        return hook

    def _accumulate(self, index: int, attn: Attention, x: torch.Tensor, rope, attn_mask, hw, output) -> None:
        layout = self._layouts[index]
        key = (layout.hw, layout.window, layout.prefix, layout.stride)
        if key not in self._distances:
            self._distances[key] = distance_matrix(layout, self.unit, x.device)
        dist = self._distances[key]
        B, N, _ = x.shape
        if dist.shape[0] != N:
            raise RuntimeError(f"{self.sums[index].block}: {N} tokens per attention call, expected {dist.shape[0]} "
                               f"for layout {layout}")
        valid = query_mask(layout, B // self._windows_per_image(layout), x.device)
        H = attn.num_heads
        per_image = H * N * N
        chunk_b = max(1, CHUNK_ELEMENTS // per_image)  # images, or windows, per step
        chunk_h = H if per_image <= CHUNK_ELEMENTS else max(1, CHUNK_ELEMENTS // (N * N))  # heads per step
        sums = self.sums[index]
        for b0 in range(0, B, chunk_b):
            sb = slice(b0, b0 + chunk_b)
            q, k, v, bias = attn.project(x[sb], rope, hw)  # the module's own projection and rotation
            weight = (torch.ones(q.shape[0], N, dtype=torch.float64, device=x.device) if valid is None
                      else valid[sb].double())[:, None, :]
            heads_out = []
            for h0 in range(0, H, chunk_h):
                sh = slice(h0, h0 + chunk_h)
                p = probabilities(q[:, sh], k[:, sh], _with_bias(_rows_of(attn_mask, sb, sh, B, H),
                                                                  None if bias is None else bias[:, sh]))
                w = weight.expand(-1, p.shape[1], -1)
                sums.distance += float(((p * dist).sum(-1) * w).sum())
                sums.entropy += float((-torch.special.xlogy(p, p).sum(-1) * w).sum())
                sums.count += int(w.sum())
                heads_out.append(p.to(v.dtype) @ v[:, sh])
            out = attn.proj(torch.cat(heads_out, dim=1).transpose(1, 2).reshape(q.shape[0], N, -1))
            ref = output[sb]
            err = float((out - ref).abs().max())
            if err > SELF_CHECK_RTOL * max(1.0, float(ref.abs().max())):
                raise RuntimeError(f"{sums.block}: the re-computed attention differs from the module's output by "
                                   f"{err:.2e}; the attention computation changed and this tool must follow it")

    @staticmethod
    def _windows_per_image(layout: LayerLayout) -> int:
        if not layout.window:
            return 1
        w = layout.window
        return -(-layout.hw[0] // w) * -(-layout.hw[1] // w)

    def reset(self) -> None:
        """Forget what was accumulated (e.g. before the next resolution)."""
        self.sums = [LayerSums(s.block) for s in self.sums]

    def results(self) -> list[tuple[int, str, float, float]]:
        """``(layer index, block name, mean distance, mean entropy)`` per layer that has seen a forward."""
        return [(i, s.block, s.distance / s.count, s.entropy / s.count) for i, s in enumerate(self.sums) if s.count]


def analyze(model: nn.Module, images: Sequence[Path], resolutions: Sequence[tuple[int, int]], *, unit: str = "patches",
            batch_size: int = 4, device: str = "cpu") -> list[dict]:
    """Run every image at every resolution; one row per (resolution, layer)."""
    from tqdm import tqdm

    model = model.to(device).eval()
    rows = []
    steps = [(res, images[i:i + batch_size]) for res in resolutions for i in range(0, len(images), batch_size)]
    with AttentionStatistics(model, unit=unit) as stats, torch.no_grad():
        progress = tqdm(steps, desc="attention", unit="batch")
        current = None
        for res, batch in progress:
            if res != current:
                if current is not None:
                    rows += _rows(stats, current, unit)
                stats.reset()
                current = res
            progress.set_postfix(resolution=format_size(res))
            model(torch.stack([load_image(p, res) for p in batch]).to(device))
        if current is not None:
            rows += _rows(stats, current, unit)
    return rows


def _rows(stats: AttentionStatistics, res: tuple[int, int], unit: str) -> list[dict]:
    return [dict(layer=i, block=name, resolution=format_size(res), distance=d, entropy=e, unit=unit)
            for i, name, d, e in stats.results()]


def write_csv(rows: list[dict], path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["layer", "block", "resolution", "distance", "entropy", "unit"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "distance": f"{r['distance']:.6f}", "entropy": f"{r['entropy']:.6f}"})


def plot(rows: list[dict], path: Path, title: str = "") -> list[int]:
    """Distance and entropy against layer, one line per resolution, without the last layer.

    Returns:
        list[int]: the layers plotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = max(r["layer"] for r in rows)
    layers = sorted({r["layer"] for r in rows if r["layer"] != last})
    if not layers:
        raise ToolError("the backbone has a single layer: nothing to plot once the last layer is left out")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for res in dict.fromkeys(r["resolution"] for r in rows):
        sel = sorted((r for r in rows if r["resolution"] == res and r["layer"] != last), key=lambda r: r["layer"])
        for ax, key in zip(axes, ("distance", "entropy")):
            ax.plot([r["layer"] for r in sel], [r[key] for r in sel], marker="o", markersize=3, label=res)
    unit = rows[0]["unit"]
    axes[0].set(xlabel="layer", ylabel=f"attention distance ({unit})")
    axes[1].set(xlabel="layer", ylabel="attention entropy (nats)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xticks(layers)
    axes[1].legend(title="resolution", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return layers


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Sizes are N (square) or HxW.")
    add_backbone_arguments(p)
    p.add_argument("--images", required=True, type=Path, help="folder of .jpg / .png images")
    p.add_argument("--resolutions", default="224", help="comma list of input sizes, e.g. 224,320,448 or 224x320")
    p.add_argument("--max-images", type=int, help="use the first N images (sorted by name)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--unit", choices=["patches", "pixels"], default="patches", help="distance unit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--csv", required=True, type=Path, help="CSV to write (layer, block, resolution, distance, "
                                                            "entropy, unit)")
    p.add_argument("--plot", type=Path, help="PNG to write: distance and entropy against layer per resolution")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    args = p.parse_args(argv)
    try:
        args.resolution_list = [parse_size(t) for t in args.resolutions.split(",") if t.strip()]
    except ValueError as exc:
        p.error(f"--resolutions: {exc}")
    if not args.resolution_list:
        p.error("--resolutions is empty")
    if args.batch_size < 1 or (args.max_images is not None and args.max_images < 1):
        p.error("--batch-size and --max-images must be >= 1")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        p.error(f"--plot must be a .png file, got '{args.plot}'")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        csv_path = check_output(args.csv, force=args.force)
        plot_path = check_output(args.plot, force=args.force) if args.plot else None
        images = list_images(args.images)[: args.max_images]
        model, report = build_backbone(args)
        if report is not None:
            print(report)
        print(f"backbone: {describe_backbone(model)}; {len(images)} images; resolutions "
              f"{', '.join(format_size(r) for r in args.resolution_list)}")
        rows = analyze(model, images, args.resolution_list, unit=args.unit, batch_size=args.batch_size,
                       device=args.device)
        write_csv(rows, csv_path)
        print(f"{'layer':>5} {'block':<18} {'resolution':>10} {'distance':>9} {'entropy':>8}")
        for r in rows:
            print(f"{r['layer']:>5} {r['block']:<18} {r['resolution']:>10} {r['distance']:>9.3f} {r['entropy']:>8.3f}")
        print(f"wrote {csv_path} (distance in {args.unit}, entropy in nats)")
        if plot_path is not None:
            layers = plot(rows, plot_path, title=f"{describe_backbone(model)}, {len(images)} images")
            print(f"wrote {plot_path} (layers {layers[0]}-{layers[-1]}; the last layer is left out)")
    except (ToolError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
