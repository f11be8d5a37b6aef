#!/usr/bin/env python
"""Export a RoPE-ViT / RoPE-Swin backbone to ONNX with dynamic batch, height and width, and check it with onnxruntime.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export-based, the default since torch 2.9; needs the
``onnxscript`` package), at its default opset unless ``--opset`` is given. The TorchScript exporter
(``dynamo=False``) is not used: it traces one forward pass, so the RoPE tables, window masks and APE resize, which
are built from the input size in Python, become constants of the export size, and the model gives wrong shapes or
fails at any other size. torch.export keeps the sizes symbolic instead.

Input sizes: the backbones branch in Python on the input size (padding to the patch / window size, Swin's
shift-or-not and padded-window masks, the APE resize), and torch.export keeps one side of each branch. The
export therefore declares the height and width as multiples of the size at which no padding is needed,
``M = patch`` (all-global ViT), ``patch * window`` (ViTDet windows) or ``patch * 2**(stages-1) * window`` (Swin),
so that the padding branches are statically settled; the exported model is exact for every such size in the
printed range. The multiple and the range are also stored in the ONNX metadata (``ropevit_dense.*``).

Examples::

    python tools/export_onnx.py vit_s.onnx --backbone rope_mixed_deit_small_patch16_LS --checkpoint ckpt.bin \\
        --verify 224x224 320x256
    python tools/export_onnx.py tiny.onnx --backbone vit-s --embed-dim 64 --depth 2 --num-heads 2 \\
        --random-weights --verify 64x96 128x128
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ropevit_dense import RoPESwin, RoPEViT
from ropevit_dense.checkpoints import CheckpointError
from ropevit_dense.rope import ComRoPEAP, ComRoPELD, LieRE
from ropevit_dense.tools_utils import (
    ToolError,
    add_backbone_arguments,
    atomic_output,
    build_backbone,
    check_output,
    describe_backbone,
    format_size,
    parse_size,
)

MAX_SIDE = 8192  # largest height / width the exported model declares
VERIFY_ATOL = 1e-4


def size_multiple(model: nn.Module) -> int:
    """The input-size step M for which the backbone needs no padding anywhere (see the module docstring)."""
    if isinstance(model, RoPEViT):
        windows = {b.window_size for b in model.blocks} - {0}
        if len(windows) > 1:
            raise ToolError(f"blocks with different window sizes {sorted(windows)} are not supported for export")
        return model.patch_size * (windows.pop() if windows else 1)
    if isinstance(model, RoPESwin):
        patch = model.patch_embed.patch_size
        return patch * 2 ** (model.num_stages - 1) * model.window_size
    raise ToolError(f"cannot export {type(model).__name__}: expected a RoPEViT or RoPESwin")


def default_export_size(model: nn.Module, multiple: int) -> tuple[int, int]:
    """An export size: a multiple of M of at least 2 M and about 256, away from the APE pretraining grid.

    At least 2 M, so that Swin's last stage holds more than one window (the shifted branch) and no side is
    specialised to a single value; away from the pretraining grid, so that the APE resize branch is the one kept
    (the resize is the identity at the pretraining grid, so the export stays exact there).
    """
    side = multiple * max(2, -(-256 // multiple))
    if isinstance(model, RoPEViT) and model.pos_embed is not None:
        while side // model.patch_size == model.pretrain_grid[0]:
            side += multiple
    return (side, side)


def _side_ranges(program) -> list[tuple[int, int]]:
    """(min, max) of the height and width the exported program accepts, from torch.export's range constraints."""
    ep = program.exported_program
    user_inputs = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
    ranges = []
    for dim in node.meta["val"].shape[2:]:
        expr = dim.node.expr if isinstance(dim, torch.SymInt) else None
        if expr is None:
            ranges.append((int(dim), int(dim)))
            continue
        (sym,) = expr.free_symbols
        vr = ep.range_constraints[sym]
        scale = int(expr / sym)
        ranges.append((scale * int(vr.lower), scale * int(vr.upper)))
    return ranges


def export(model: nn.Module, path: Path, size: tuple[int, int], opset: Optional[int] = None,
           metadata: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Export ``model`` to ONNX at ``path`` (written atomically) with dynamic batch, height and width.

    Args:
        model: a RoPEViT or RoPESwin in eval mode.
        path: the ``.onnx`` file.
        size: (height, width) of the example input; both multiples of :func:`size_multiple`.
        opset: ONNX opset; None takes the exporter's default.
        metadata: extra ``metadata_props`` entries.

    Returns:
        dict: the ``ropevit_dense.*`` metadata written into the model (size multiple, valid height / width ranges,
        opset, output names).
    """
    from torch.export import Dim

    m = size_multiple(model)
    if size[0] % m or size[1] % m:
        raise ToolError(f"export size {format_size(size)} is not a multiple of {m} (the input-size step of this "
                        "backbone); pick e.g. " + format_size(default_export_size(model, m)))
    num_outputs = len(model.out_indices)
    names = [f"out{i}" for i in model.out_indices]
    kh, kw = Dim("h_steps", min=1, max=MAX_SIDE // m), Dim("w_steps", min=1, max=MAX_SIDE // m)
    dynamic = ({0: Dim("batch", min=1, max=1024), 2: m * kh, 3: m * kw},)
    x = torch.randn(2, 3, *size)  # batch 2: a batch of 1 would be specialised to 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter; errors still raise
        try:
            program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=dynamic, opset_version=opset,
                                        input_names=["images"], output_names=names, verbose=False)
        except ImportError as exc:
            raise ToolError(f"the ONNX exporter needs the 'onnxscript' package (pip install onnxscript): {exc}") \
                from None
        except Exception as exc:  # noqa: BLE001 - torch.onnx raises many types; name the failing construct
            text = str(exc)
            generator_modes = any(isinstance(mod, (LieRE, ComRoPEAP, ComRoPELD)) for mod in model.modules())
            hint = (" (the LieRE / ComRoPE position modes cannot be exported: LieRE's exponentials take a number of "
                    "squarings that depends on the generators' values, ComRoPE an eigendecomposition; ONNX expresses "
                    "neither)" if generator_modes else "")
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # the exporter colours its messages
            text = text.split("## Exception summary", 1)[-1]  # its own summary, when it wrote one
            summary = " ".join(line.strip() for line in text.splitlines() if line.strip())[:500]
            raise ToolError(f"torch.onnx.export failed{hint}: {type(exc).__name__}: {summary}") from None
    (h_min, h_max), (w_min, w_max) = _side_ranges(program)
    info = {
        "ropevit_dense.size_multiple": str(m),
        "ropevit_dense.height_range": f"{h_min}-{h_max}",
        "ropevit_dense.width_range": f"{w_min}-{w_max}",
        "ropevit_dense.outputs": ",".join(names),
        "ropevit_dense.opset": str(program.model.opset_imports.get("", "")),
        **(metadata or {}),
    }
    program.model.metadata_props.update(info)
    assert len(program.model.graph.outputs) == num_outputs
    with atomic_output(path) as tmp:
        program.save(tmp, external_data=False)
    return info


def read_metadata(path: Path) -> dict[str, str]:
    """The ``ropevit_dense.*`` entries of an exported file's ``metadata_props``."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("ropevit_dense.")}


def check_sizes(sizes: list[tuple[int, int]], metadata: dict[str, str]) -> None:
    """Raise :class:`ToolError` for sizes that the export does not cover (wrong multiple or out of range)."""
    m = int(metadata["ropevit_dense.size_multiple"])
    (h_lo, h_hi), (w_lo, w_hi) = (tuple(map(int, metadata[f"ropevit_dense.{k}_range"].split("-")))
                                  for k in ("height", "width"))
    for h, w in sizes:
        if h % m or w % m:
            raise ToolError(f"size {h}x{w} is not a multiple of {m}, the input-size step of this export")
        if not (h_lo <= h <= h_hi and w_lo <= w <= w_hi):
            raise ToolError(f"size {h}x{w} is outside the range of this export (height {h_lo}-{h_hi}, "
                            f"width {w_lo}-{w_hi})")


def verify(path: Path, model: nn.Module, sizes: list[tuple[int, int]], batch: int = 1,
           seed: int = 0) -> list[tuple[tuple[int, int], float]]:
    """Run the ONNX file with onnxruntime and the model with torch on the same random images.

    Args:
        path: a file written by :func:`export` (its metadata gives the valid sizes).
        model: the torch backbone it was exported from.
        sizes: (height, width) pairs to compare at.
        batch (int): images per run. Default: 1.
        seed (int): seed of the random images. Default: 0.

    Returns:
        list: ``(size, max abs difference over all outputs)`` per size.
    """
    import onnxruntime as ort

    check_sizes(sizes, read_metadata(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    g = torch.Generator().manual_seed(seed)
    results = []
    for size in sizes:
        x = torch.randn(batch, 3, *size, generator=g)
        with torch.no_grad():
            expected = model(x)
        got = session.run(None, {input_name: x.numpy()})
        if len(got) != len(expected) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(got, expected)):
            raise ToolError(f"onnxruntime output shapes {[a.shape for a in got]} differ from torch "
                            f"{[tuple(b.shape) for b in expected]} at {format_size(size)}")
        diff = max(float((torch.from_numpy(a) - b).abs().max()) for a, b in zip(got, expected))
        results.append((size, diff))
    return results


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Sizes are HxW (height x width) or N for NxN.")
    p.add_argument("output", type=Path, help="the .onnx file to write")
    add_backbone_arguments(p)
    p.add_argument("--export-size", type=parse_size, metavar="HxW",
                   help="example input size for the export (a multiple of the input-size step); default: a "
                        "multiple of the step near 256")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's default)")
    p.add_argument("--verify", type=parse_size, nargs="+", metavar="HxW",
                   help="compare onnxruntime with torch at these sizes and print the max abs difference")
    p.add_argument("--atol", type=float, default=VERIFY_ATOL, help=f"--verify tolerance (default {VERIFY_ATOL})")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    if args.output.suffix != ".onnx":
        p.error(f"output '{args.output}' must end with .onnx")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        out = check_output(args.output, force=args.force, inputs=[args.checkpoint] if args.checkpoint else [])
        model, report = build_backbone(args)
        if report is not None:
            print(report)
        m = size_multiple(model)
        size = args.export_size or default_export_size(model, m)
        bad = [format_size(s) for s in [size, *(args.verify or [])] if s[0] % m or s[1] % m]
        if bad:
            raise ToolError(f"sizes {', '.join(bad)} are not multiples of {m}, the input-size step of this backbone "
                            f"(e.g. {format_size(default_export_size(model, m))})")
        print(f"backbone: {describe_backbone(model)}")
        print(f"exporting at {format_size(size)} (batch 2); input height and width must be multiples of {m}")
        info = export(model, out, size, opset=args.opset,
                      metadata={"ropevit_dense.backbone": describe_backbone(model)})
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, opset {info['ropevit_dense.opset']}, "
              f"outputs {info['ropevit_dense.outputs']}); valid sizes: height {info['ropevit_dense.height_range']}, "
              f"width {info['ropevit_dense.width_range']}, multiples of {m}; batch dynamic")
        if args.verify:
            worst = 0.0
            for hw, diff in verify(out, model, args.verify):
                print(f"verify {format_size(hw)}: max abs diff onnxruntime vs torch = {diff:.2e}")
                worst = max(worst, diff)
            if worst > args.atol:
                print(f"error: max abs difference {worst:.2e} exceeds --atol {args.atol:g}", file=sys.stderr)
                return 1
    except (ToolError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
