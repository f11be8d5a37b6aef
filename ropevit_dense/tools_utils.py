"""Helpers shared by the command-line tools in ``tools/``: safe output files, image folders, sizes, backbones.

Nothing here is needed to use the backbones; the tools (``tools/convert_checkpoint.py``, ``export_onnx.py``,
``analyze_attention.py``) import it so that each script stays a thin argument parser around the package.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .backbones import SWIN_PRESETS, VIT_PRESETS, RoPESwin, RoPEViT
from .checkpoints import LoadReport, load_pretrained
from .checkpoints.zoo import PRETRAINED, create_backbone
from .rope import ROPE_TYPES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# preset name -> (backbone class, preset table key)
PRESETS = {f"vit-{k}": ("vit", k) for k in VIT_PRESETS} | {f"swin-{k}": ("swin", k) for k in SWIN_PRESETS}


class ToolError(RuntimeError):
    """A user-facing error of a tool (bad path, bad argument); the scripts print it and exit with status 2."""


# -- sizes ------------------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """``'224'`` -> ``(224, 224)``; ``'320x256'`` -> ``(320, 256)`` (height x width).

    Raises:
        ValueError: naming the text when it is not one or two positive integers.
    """
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v < 1 for v in values):
        raise ValueError(f"bad image size '{text}': expected N or HxW with positive integers, e.g. 224 or 320x256")
    return (values[0], values[-1])


def format_size(hw: Sequence[int]) -> str:
    """``(320, 256)`` -> ``'320x256'`` (height x width)."""
    return f"{hw[0]}x{hw[1]}"


# -- output files -----------------------------------------------------------------------------------------------
def check_output(path: Union[str, os.PathLike], *, force: bool, inputs: Sequence[Union[str, os.PathLike]] = ()
                 ) -> Path:
    """Validate an output path before any work is done.

    Args:
        path: the file to write.
        force (bool): allow replacing an existing file.
        inputs: files the tool reads; the output may never be one of them, even with ``force``.

    Returns:
        Path: the output path.

    Raises:
        ToolError: the output is an input, is a directory, exists without ``force``, or its folder is missing.
    """
    out = Path(path).expanduser()
    for src in inputs:
        src_path = Path(src).expanduser()
        if src_path.exists() and out.exists() and os.path.samefile(src_path, out):
            raise ToolError(f"output '{out}' is the input file; write to another path (inputs are never modified)")
    if out.is_dir():
        raise ToolError(f"output '{out}' is a directory; give a file name")
    if out.exists() and not force:
        raise ToolError(f"output '{out}' exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ToolError(f"output folder '{out.parent}' does not exist")
    return out


@contextmanager
def atomic_output(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Write a file atomically: yields a temporary path in the same folder, renamed over ``path`` on success.

    A failure (or an interruption) while writing leaves ``path`` untouched and removes the temporary file, so a
    reader never sees a half-written checkpoint or model.
    """
    out = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the result the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # flush the data to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp_path, out)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# -- images -----------------------------------------------------------------------------------------------------
def list_images(folder: Union[str, os.PathLike]) -> list[Path]:
    """The ``.jpg`` / ``.jpeg`` / ``.png`` files of a folder (not recursive), sorted by name.

    Raises:
        ToolError: the folder is missing or holds no such image.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ToolError(f"image folder not found: '{root}'")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ToolError(f"no .jpg / .jpeg / .png images in '{root}'")
    return files


def load_image(path: Union[str, os.PathLike], size: tuple[int, int]) -> torch.Tensor:
    """Read an image as RGB, resize it to ``size`` (height, width; bicubic) and normalise it with ImageNet statistics.

    Returns:
        Tensor: ``(3, H, W)`` float32.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    except (OSError, UnidentifiedImageError) as exc:
        raise ToolError(f"cannot read image '{path}': {exc}") from None
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


# -- backbones from command-line arguments ------------------------------------------------------------------------
def int_list(text: str) -> tuple[int, ...]:
    """``'2,5,8'`` -> ``(2, 5, 8)`` (an argparse type)."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got '{text}'") from None


def add_backbone_arguments(parser: argparse.ArgumentParser, *, checkpoint_help: Optional[str] = None) -> None:
    """Add the options that pick a backbone: a preset or published name, overrides and a checkpoint."""
    g = parser.add_argument_group("backbone")
    g.add_argument("--backbone", required=True, metavar="NAME",
                   help=f"a preset ({', '.join(PRESETS)}) or a published checkpoint name "
                        "(e.g. rope_mixed_deit_small_patch16_LS; see ropevit_dense.PRETRAINED)")
    g.add_argument("--checkpoint", metavar="PATH",
                   help=checkpoint_help or "weights (path, URL or hf://owner/repo[/file]) in any supported layout; "
                                           "a published name without it downloads its own weights")
    g.add_argument("--random-weights", action="store_true", help="do not load weights (random initialisation)")
    g.add_argument("--rope-type", choices=[*ROPE_TYPES, "none"], help="position encoding of a preset (default mixed)")
    g.add_argument("--ape", action="store_true", help="absolute position embedding (ViT presets)")
    g.add_argument("--rpb", action="store_true", help="relative position bias (Swin presets)")
    g.add_argument("--embed-dim", type=int, help="override the preset's width")
    g.add_argument("--depth", type=int, help="override the preset's depth (ViT)")
    g.add_argument("--depths", type=int_list, help="override the preset's blocks per stage (Swin), e.g. 2,2")
    g.add_argument("--num-heads", type=int_list, help="heads (ViT: one number; Swin: one per stage)")
    g.add_argument("--patch-size", type=int, help="override the patch size")
    g.add_argument("--window-size", type=int, help="ViT: window of the non-global blocks (ViTDet); Swin: window")
    g.add_argument("--global-blocks", type=int_list, default=None, metavar="I,J,...",
                   help="ViT: blocks with global attention when --window-size is set")
    g.add_argument("--no-cls-token", action="store_true", help="ViT: no cls token")


def backbone_kwargs_from_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Constructor arguments of a preset with the command-line overrides.

    Returns:
        (family, kwargs): family is ``'vit'`` or ``'swin'``.
    """
    family, key = PRESETS[args.backbone]
    kwargs: dict[str, Any] = dict(VIT_PRESETS[key] if family == "vit" else SWIN_PRESETS[key])
    kwargs["rope_type"] = None if args.rope_type == "none" else (args.rope_type or "mixed")
    if args.embed_dim is not None:
        kwargs["embed_dim"] = args.embed_dim
    if args.patch_size is not None:
        kwargs["patch_size"] = args.patch_size
    if args.window_size is not None:
        kwargs["window_size"] = args.window_size
    heads = args.num_heads
    if family == "vit":
        if args.depths is not None or args.rpb:
            raise ToolError("--depths and --rpb are Swin options; this is a ViT preset")
        if args.depth is not None:
            kwargs["depth"] = args.depth
        if heads is not None:
            if len(heads) != 1:
                raise ToolError(f"--num-heads takes one number for a ViT, got {','.join(map(str, heads))}")
            kwargs["num_heads"] = heads[0]
        kwargs["use_ape"] = args.ape
        if args.global_blocks is not None:
            kwargs["global_block_indexes"] = args.global_blocks
        if args.no_cls_token:
            kwargs["use_cls_token"] = False
    else:
        if args.depth is not None or args.ape or args.global_blocks is not None or args.no_cls_token:
            raise ToolError("--depth, --ape, --global-blocks and --no-cls-token are ViT options; this is a Swin preset")
        if args.depths is not None:
            kwargs["depths"] = args.depths
        if heads is not None:
            kwargs["num_heads"] = heads
        kwargs["use_rpb"] = args.rpb
    return family, kwargs


def build_backbone(args: argparse.Namespace) -> tuple[nn.Module, Optional[LoadReport]]:
    """The backbone selected by :func:`add_backbone_arguments`' options, in eval mode.

    Returns:
        (model, report): the load report is None for random weights.

    Raises:
        ToolError: unknown name, conflicting options, or arguments the backbone rejects.
    """
    name = args.backbone
    try:
        if name in PRETRAINED:
            arch_options = {"--rope-type": args.rope_type, "--embed-dim": args.embed_dim, "--depth": args.depth,
                            "--depths": args.depths, "--num-heads": args.num_heads, "--patch-size": args.patch_size,
                            "--ape": args.ape or None, "--rpb": args.rpb or None}
            given = [k for k, v in arch_options.items() if v is not None]
            if given:
                raise ToolError(f"{', '.join(given)} would change the architecture of '{name}'; use a preset "
                                f"({', '.join(PRESETS)}) to build a custom backbone")
            overrides: dict[str, Any] = {}
            if args.window_size is not None:
                overrides["window_size"] = args.window_size
            if args.global_blocks is not None:
                overrides["global_block_indexes"] = args.global_blocks
            if args.no_cls_token:
                overrides["use_cls_token"] = False
            pretrained = False if args.random_weights else (args.checkpoint or True)
            model, report = create_backbone(name, pretrained=pretrained, **overrides)
        elif name in PRESETS:
            family, kwargs = backbone_kwargs_from_args(args)
            model = (RoPEViT if family == "vit" else RoPESwin)(**kwargs)
            report = None
            if args.checkpoint and not args.random_weights:
                report = load_pretrained(model, args.checkpoint)
        else:
            raise ToolError(f"unknown backbone '{name}': use a preset ({', '.join(PRESETS)}) or a published name "
                            "(see ropevit_dense.PRETRAINED)")
    except (TypeError, ValueError) as exc:
        raise ToolError(f"cannot build backbone '{name}': {exc}") from None
    return model.eval(), report


def describe_backbone(model: nn.Module) -> str:
    """One line naming the backbone's class, size and position encoding."""
    if isinstance(model, RoPEViT):
        windows = sorted({b.window_size for b in model.blocks} - {0})
        global_blocks = [i for i, b in enumerate(model.blocks) if not b.window_size]
        layout = f", window {windows[0]} + global {global_blocks}" if windows else ", all global"
        family = "" if model.family.name == "rope-vit" else f"family={model.family.name}, "
        return (f"RoPEViT({family}embed_dim={model.embed_dim}, depth={model.depth}, num_heads={model.num_heads}, "
                f"patch={model.patch_size}, rope={model.rope_type}, ape={model.pos_embed is not None}{layout})")
    if isinstance(model, RoPESwin):
        depths = tuple(len(s.blocks) for s in model.layers)
        heads = tuple(s.blocks[0].attn.num_heads for s in model.layers)
        rpb = model.layers[0].blocks[0].attn.relative_position_bias_table is not None
        return (f"RoPESwin(embed_dim={model.num_features[0]}, depths={depths}, num_heads={heads}, "
                f"window={model.window_size}, rope={model.rope_type}, rpb={rpb})")
    return type(model).__name__
