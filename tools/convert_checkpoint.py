#!/usr/bin/env python
"""Convert a RoPE-ViT / RoPE-Swin checkpoint to a backbone-only checkpoint in this package's key layout.

Inputs: a naver RoPE-ViT / RoPE-Swin file (``{'model': ...}``), a timm state dict, one of ours, a DINOv3 or EVA-02
checkpoint in its official layout (facebookresearch/dinov3 ``torch.hub`` files, baaivision/EVA EVA-02 ``.pt``) or
timm's, or an OpenMMLab (mmengine) / detectron2 training checkpoint of a whole detector or segmentor (the backbone's
keys -- ``backbone.``, in detectron2 ``backbone.net.`` or ``backbone.bottom_up.`` -- are kept, the rest is dropped),
including detectron2 ``.pkl`` files. Files are read with the package's safe loaders (``weights_only``; mmengine's own
checkpoint metadata is allowlisted; ``.pkl`` through a restricted unpickler that accepts numpy arrays only), locally,
from an http(s) URL or from ``hf://owner/repo[/file]``.

The architecture comes from ``--arch`` (a preset such as ``vit-b`` / ``swin-t`` or a published name such as
``rope_mixed_deit_base_patch16_LS`` or ``dinov3_vitb16``) or, without it, from the tensors (ViT family, width, depth,
patch, MLP ratio, cls token, LayerScale, APE grid, RoPE frequencies, relative position bias, window). The backbone
is built, the checkpoint is loaded into it by the strict core loader (its key report is printed), and the loaded
weights are written, so the output is known to load. Keys the checkpoint did not provide (e.g. Swin's per-stage
output norms of a classification checkpoint) are left out, so loading the output reports them again.

Output formats: ``ours`` (default; ``torch.save`` of ``{'state_dict', 'meta'}``, or ``.safetensors`` with
``--safetensors``), readable by ``load_pretrained`` and by ``init_cfg=dict(type='Pretrained', checkpoint=...)`` of
the OpenMMLab adapters; ``d2`` (a ``.pkl`` in detectron2's model-zoo layout, ``{'model': {prefix + key: array},
'__author__': ...}``, which ``DetectionCheckpointer`` loads by exact name). Outputs are written atomically and are
never written over an existing file without ``--force``; the input is never modified.

Examples::

    python tools/convert_checkpoint.py pytorch_model.bin rope_mixed_vit_b.pth
    python tools/convert_checkpoint.py work_dirs/dino/iter_90000.pth backbone.safetensors --safetensors
    python tools/convert_checkpoint.py swin_rope_mixed_tiny.bin swin_t_d2.pkl --arch swin-t --format d2
    python tools/convert_checkpoint.py dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth dinov3_b.safetensors --safetensors
    python tools/convert_checkpoint.py eva02_B_pt_in21k_p14.pt eva02_b.pth
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ropevit_dense import RoPESwin, RoPEViT
from ropevit_dense.backbones import FAMILIES, SWIN_PRESETS, VIT_PRESETS
from ropevit_dense.checkpoints import (
    CheckpointError,
    LoadReport,
    guess_architecture,
    load_pretrained,
    unwrap,
)
from ropevit_dense.checkpoints.families import guess_family
from ropevit_dense.checkpoints.pickle_safe import load_any
from ropevit_dense.checkpoints.zoo import PRETRAINED
from ropevit_dense.rope import ROPE_TYPES, is_rope_parameter
from ropevit_dense.tools_utils import PRESETS, ToolError, atomic_output, check_output, describe_backbone, int_list

D2_PREFIXES = {"vit": "backbone.net.", "swin": "backbone.bottom_up."}
VIT_HEAD_DIM, SWIN_HEAD_DIM = 64, 32  # head widths of every published RoPE-ViT / RoPE-Swin


def _max_index(sd: Mapping[str, Any], pattern: str) -> int:
    found = [int(m.group(1)) for k in sd if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def _square_side(n: int) -> Optional[int]:
    side = math.isqrt(n)
    return side if side * side == n else None


def _check_generator_mode(sd: Mapping[str, torch.Tensor]) -> None:
    """Raise when the checkpoint holds learned RoPE parameters other than frequencies (LieRE, ComRoPE): their mode
    cannot be read off reliably, so the user names it."""
    others = sorted({k.rsplit(".", 1)[1] for k in sd if is_rope_parameter(k) and not k.endswith(".freqs")})
    if others:
        raise ToolError(f"the checkpoint holds RoPE parameters {others} of a position mode other than axial / "
                        f"mixed; pass --rope-type (one of {', '.join(ROPE_TYPES)})")


def infer_vit(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], list[str]]:
    """RoPEViT constructor arguments read off an unwrapped (naver / timm / our) state dict.

    Returns:
        (kwargs, notes): notes say what had to be assumed.
    """
    notes: list[str] = []
    w = sd["patch_embed.proj.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    kw: dict[str, Any] = dict(embed_dim=dim, depth=_max_index(sd, r"blocks\.(\d+)\."), patch_size=patch,
                              in_chans=w.shape[1], qkv_bias="blocks.0.attn.qkv.bias" in sd,
                              use_cls_token="cls_token" in sd)
    kw["mlp_ratio"] = sd["blocks.0.mlp.fc1.weight"].shape[0] / dim
    kw["init_values"] = 1e-5 if "blocks.0.gamma_1" in sd else None  # the value is loaded; only presence matters
    pos = sd.get("pos_embed")
    kw["use_ape"] = pos is not None
    if pos is not None:
        side = _square_side(pos.shape[1]) or _square_side(pos.shape[1] - 1)  # a table with a cls entry
        if side is None:
            raise ToolError(f"pos_embed of shape {tuple(pos.shape)} is not a square grid")
        kw["pretrain_img_size"] = side * patch
    ours = sd.get("blocks.0.attn.rope.freqs")
    timm = sd.get("rope.freqs")
    heads = None
    if ours is not None or timm is not None or "freqs" in sd:
        kw["rope_type"] = "mixed"
        if ours is not None:
            heads = ours.shape[1]
            kw["rope_type"] = _freqs_mode(ours, dim // heads)
        elif timm is not None and timm.ndim == 4:
            heads = timm.shape[2]
    else:
        kw["rope_type"] = None if pos is not None else "axial"
        notes.append(f"no RoPE frequencies in the checkpoint: axial RoPE and no RoPE store the same tensors, so "
                     f"rope_type={kw['rope_type']!r} was assumed (the written file is the same either way; set "
                     "rope_type in your config)")
    if heads is None:
        if dim % VIT_HEAD_DIM:
            raise ToolError(f"cannot tell the number of heads of a {dim}-wide ViT from its weights; pass --num-heads")
        heads = dim // VIT_HEAD_DIM
        notes.append(f"num_heads={heads} assumed from head_dim {VIT_HEAD_DIM} (pass --num-heads otherwise)")
    kw["num_heads"] = heads
    return kw, notes


def infer_family_vit(sd: Mapping[str, torch.Tensor], name: str) -> tuple[dict[str, Any], list[str]]:
    """RoPEViT arguments of a DINOv3 / EVA-02 state dict (official, timm or our layout) of family ``name``: what
    differs from the family record is read off the tensors."""
    notes: list[str] = []
    fam = FAMILIES[name]
    if sd and all(k.startswith("net.") for k in sd):
        sd = {k[len("net."):]: v for k, v in sd.items()}
    w = sd["patch_embed.proj.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    kw: dict[str, Any] = dict(family=name, embed_dim=dim, depth=_max_index(sd, r"blocks\.(\d+)\."), in_chans=w.shape[1])
    if patch != fam.patch_size:
        kw["patch_size"] = patch
    periods = sd.get("rope_embed.periods")
    cos = next((v for k, v in sd.items() if k.endswith("freqs_cos")), None)
    head_dim = 4 * periods.numel() if periods is not None else (cos.shape[-1] if cos is not None else None)
    if head_dim is None:
        head_dim = VIT_HEAD_DIM
        notes.append(f"num_heads={dim // head_dim} assumed from head_dim {head_dim} (pass --num-heads otherwise)")
    kw["num_heads"] = dim // head_dim
    if not any(k.endswith((".attn.qkv.bias", ".attn.q_bias", ".attn.q_proj.bias")) for k in sd):
        kw["qkv_bias"] = False  # timm's DINOv3 without the (all-zero) q / v biases
    if "cls_token" not in sd:
        kw["use_cls_token"] = False
    layer_scale = any(k.endswith(("blocks.0.gamma_1", "blocks.0.ls1.gamma")) for k in sd)
    if layer_scale != (fam.init_values is not None):
        kw["init_values"] = 1e-5 if layer_scale else None  # the value is loaded; only presence matters
    pos = sd.get("pos_embed")
    if (pos is not None) != fam.use_ape:
        kw["use_ape"] = pos is not None
    if pos is not None:
        side = _square_side(pos.shape[1]) or _square_side(pos.shape[1] - 1)
        if side is None:
            raise ToolError(f"pos_embed of shape {tuple(pos.shape)} is not a square grid")
        ref = fam.pretrain_img_size // fam.patch_size  # the RoPE reference grid keeps its token count
        if patch != fam.patch_size:
            kw["pretrain_img_size"] = ref * patch
        if side != ref:
            kw["ape_img_size"] = side * patch
    hidden = next((v.shape[0] for k, v in sd.items() if k.endswith(("blocks.0.mlp.fc1.weight", "blocks.0.mlp.w1.weight",
                                                                     "blocks.0.mlp.fc1_g.weight"))), None)
    if hidden is not None and hidden != int(dim * fam.mlp_ratio):
        kw["mlp_ratio"] = hidden / dim
    if fam.out_norm and "norm.weight" not in sd:
        kw["family"] = dict(base=name, out_norm=False)
        notes.append("no final norm in the checkpoint: the outputs are the raw block outputs (out_norm=False)")
    return kw, notes


def _freqs_mode(freqs: torch.Tensor, head_dim: int) -> str:
    """'mixed' for per-pair frequencies ``(2, heads, head_dim / 2)``, 'spherical' for per-triple ones
    ``(2, heads, head_dim / 3)`` (both modes name their parameter ``rope.freqs``)."""
    if freqs.shape[-1] == head_dim // 2:
        return "mixed"
    if freqs.shape[-1] == head_dim // 3:
        return "spherical"
    raise ToolError(f"RoPE frequencies of shape {tuple(freqs.shape)} fit neither RoPE-Mixed (head_dim / 2 = "
                    f"{head_dim // 2}) nor Spherical RoPE (head_dim / 3 = {head_dim // 3}) with head_dim {head_dim}; "
                    "pass --num-heads / --rope-type")


def _is_axial(freqs: torch.Tensor) -> bool:
    """Fixed axial frequencies: x only on the first half of the pairs, y only on the second, equal in every head."""
    half = freqs.shape[-1] // 2
    f = freqs.float()
    return bool(f[0, :, half:].abs().max() < 1e-6 and f[1, :, :half].abs().max() < 1e-6
                and (f - f[:, :1]).abs().max() < 1e-6)


def infer_swin(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], list[str]]:
    """RoPESwin constructor arguments read off an unwrapped (naver / Microsoft / our) state dict."""
    notes: list[str] = []
    w = sd["patch_embed.proj.weight"]
    dim = w.shape[0]
    stages = _max_index(sd, r"layers\.(\d+)\.")
    depths = tuple(_max_index(sd, rf"layers\.{i}\.blocks\.(\d+)\.") for i in range(stages))
    kw: dict[str, Any] = dict(embed_dim=dim, depths=depths, patch_size=w.shape[-1], in_chans=w.shape[1],
                              qkv_bias="layers.0.blocks.0.attn.qkv.bias" in sd)
    kw["mlp_ratio"] = sd["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / dim
    heads, assumed, freqs = [], False, []
    window = None
    for i in range(stages):
        attn = f"layers.{i}.blocks.0.attn."
        f = sd.get(attn + "rope_freqs", sd.get(attn + "rope.freqs"))
        table = sd.get(attn + "relative_position_bias_table")
        if f is not None:
            heads.append(f.shape[1])
        elif table is not None:
            heads.append(table.shape[1])
        else:
            heads.append(dim * 2 ** i // SWIN_HEAD_DIM)
            assumed = True
        if table is not None:
            window = (_square_side(table.shape[0]) + 1) // 2
    freqs = [v for k, v in sd.items() if k.endswith(("attn.rope_freqs", "attn.rope.freqs"))]
    kw["num_heads"] = tuple(heads)
    kw["use_rpb"] = any(k.endswith("relative_position_bias_table") for k in sd)
    kw["rope_type"] = (("axial" if all(_is_axial(f) for f in freqs) else "mixed") if freqs else None)
    first = sd.get("layers.0.blocks.0.attn.rope.freqs")
    if first is not None and _freqs_mode(first, dim // heads[0]) == "spherical":
        kw["rope_type"] = "spherical"
    if window is None:
        n = next((v.shape[-1] for k, v in sd.items() if k.endswith(("relative_position_index", "attn_mask"))), None)
        window = _square_side(n) if n else None
    if window is None:
        window = 7
        notes.append("window_size=7 assumed: no tensor of the checkpoint depends on the window (the written file "
                     "is the same for any window; set window_size in your config)")
    kw["window_size"] = window
    norms = sorted(int(m.group(1)) for k in sd if (m := re.match(r"norm(\d+)\.weight$", k)))
    if norms:
        kw["out_indices"] = tuple(norms)
    if assumed:
        notes.append(f"num_heads={kw['num_heads']} assumed from head_dim {SWIN_HEAD_DIM} (pass --num-heads otherwise)")
    return kw, notes


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def arch_kwargs(name: str) -> tuple[str, dict[str, Any]]:
    """(family, constructor arguments) of an ``--arch`` value: a published name or a preset."""
    if name in PRETRAINED:
        spec = PRETRAINED[name]
        return spec.family, spec.backbone_kwargs()
    if name in PRESETS:
        family, key = PRESETS[name]
        return family, dict(VIT_PRESETS[key] if family == "vit" else SWIN_PRESETS[key])
    raise ToolError(f"unknown --arch '{name}': use a preset ({', '.join(PRESETS)}) or a published name "
                    "(see ropevit_dense.PRETRAINED)")


def resolve_architecture(sd: Mapping[str, torch.Tensor], args: argparse.Namespace
                         ) -> tuple[str, dict[str, Any], list[str]]:
    """Family, constructor arguments and notes: inferred from the tensors, then ``--arch``, then explicit options."""
    family = {"ViT": "vit", "Swin": "swin"}.get(guess_architecture(sd))
    if family is None:
        raise ToolError(f"the checkpoint does not look like a ViT or Swin backbone ({guess_architecture(sd)}); "
                        f"its first keys: {sorted(sd)[:5]}")
    if args.rope_type is None:
        _check_generator_mode(sd)
    arch_family, fixed = arch_kwargs(args.arch) if args.arch else (family, {})
    if arch_family != family:
        names = {"vit": "ViT", "swin": "Swin"}
        raise ToolError(f"--arch {args.arch} is a {names[arch_family]} but the checkpoint holds a "
                        f"{names[family]} backbone")
    guessed = guess_family(sd) if family == "vit" else None
    vit_family = getattr(args, "family", None) or fixed.get("family") or guessed or "rope-vit"
    if family == "vit" and guessed and vit_family != guessed:
        raise ToolError(f"the checkpoint holds a '{guessed}' ViT (its key names say so), not '{vit_family}'")
    if family == "vit" and vit_family != "rope-vit":
        kwargs, notes = infer_family_vit(sd, vit_family)
    else:
        kwargs, notes = (infer_vit if family == "vit" else infer_swin)(sd)
        if family == "vit" and "cls_token" not in sd:
            notes.append("no key names a DINOv3 / EVA-02 layout: read as a RoPE-ViT; pass --family for a windowed "
                         "DINOv3 / EVA-02 checkpoint trained with this package")
    if args.arch:
        for key in ("embed_dim", "depth", "depths"):
            if key in fixed and key in kwargs and _as_tuple(fixed[key]) != _as_tuple(kwargs[key]):
                raise ToolError(f"--arch {args.arch} has {key}={fixed[key]} but the checkpoint has {kwargs[key]}")
        kwargs.update({k: v for k, v in fixed.items() if not (k == "family" and isinstance(kwargs.get(k), dict))})
        notes = [n for n in notes if not any(n.startswith(f"{k}=") for k in fixed)
                 and not (n.startswith("no RoPE") and "rope_type" in fixed)]
    if args.num_heads is not None:
        kwargs["num_heads"] = args.num_heads[0] if family == "vit" else tuple(args.num_heads)
        notes = [n for n in notes if not n.startswith("num_heads=")]
    if args.rope_type is not None:
        kwargs["rope_type"] = None if args.rope_type == "none" else args.rope_type
        notes = [n for n in notes if not n.startswith("no RoPE")]
    if args.window_size is not None:
        if family != "swin":
            raise ToolError("--window-size applies to Swin checkpoints (a ViT's windows are a config choice)")
        kwargs["window_size"] = args.window_size
        notes = [n for n in notes if not n.startswith("window_size=")]
    return family, kwargs, notes


def convert(source: str, args: argparse.Namespace
            ) -> tuple[nn.Module, dict[str, Any], LoadReport, dict[str, torch.Tensor], list[str]]:
    """Read ``source``, build its backbone, load it strictly and return the weights to write.

    Returns:
        (model, kwargs, report, state_dict, notes): ``kwargs`` built the model; ``state_dict`` holds exactly the
        loaded keys, in our layout.
    """
    obj = load_any(source)  # torch / safetensors files, or a detectron2 .pkl through the restricted unpickler
    try:
        sd = unwrap(obj)
    except TypeError as exc:
        raise ToolError(f"'{source}' is not a model checkpoint: {exc}") from None
    family, kwargs, notes = resolve_architecture(sd, args)
    inner = next((obj[k] for k in ("state_dict", "model", "model_ema", "module") if isinstance(obj.get(k), Mapping)),
                 obj)
    total = sum(isinstance(v, torch.Tensor) for v in inner.values())
    if total > len(sd):
        notes.append(f"kept the {len(sd)} backbone tensors of the {total} in the checkpoint (neck / heads dropped)")
    if family == "vit" and not kwargs.get("use_cls_token", True):
        notes.append("no cls token (a ViTDet-style backbone): windows are not part of the weights, so it is "
                     "validated all-global; set window_size / global_block_indexes in your config")
    try:
        model = (RoPEViT if family == "vit" else RoPESwin)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"cannot build the backbone {kwargs}: {exc}") from None
    report = load_pretrained(model, obj, strict=True)
    report.source = str(source)
    loaded = set(report.loaded)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k in loaded}
    return model.eval(), kwargs, report, state, notes


def write(state: dict[str, torch.Tensor], out: Path, *, fmt: str, meta: dict[str, Any], prefix: str) -> None:
    """Write the converted weights atomically in the chosen format."""
    with atomic_output(out) as tmp:
        if fmt == "d2":
            arrays = {prefix + k: (v.float() if v.dtype == torch.bfloat16 else v).cpu().numpy()
                      for k, v in state.items()}
            with open(tmp, "wb") as fh:
                pickle.dump({"model": arrays, "__author__": "ropevit_dense", "meta": meta}, fh)
        elif fmt == "safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                      metadata={k: repr(v) for k, v in meta.items()})
        else:
            torch.save({"state_dict": state, "meta": meta}, tmp)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="checkpoint: local path, http(s) URL or hf://owner/repo[/file]")
    p.add_argument("output", type=Path, help="file to write (.pth / .safetensors / .pkl for --format d2)")
    p.add_argument("--arch", help=f"architecture: a preset ({', '.join(PRESETS)}) or a published name; "
                                  "default: read off the checkpoint")
    p.add_argument("--family", choices=list(FAMILIES),
                   help="ViT family, when the key names do not tell (a windowed DINOv3 / EVA-02 trained here)")
    p.add_argument("--num-heads", type=int_list,
                   help="heads (ViT: one number; Swin: one per stage) when they cannot be read off the weights")
    p.add_argument("--rope-type", choices=[*ROPE_TYPES, "none"], help="position encoding, when it cannot be read "
                                                                      "off the weights")
    p.add_argument("--window-size", type=int, help="Swin window, when the checkpoint holds no window-shaped tensor")
    p.add_argument("--format", choices=["ours", "d2"], default="ours",
                   help="ours: our layout for load_pretrained / init_cfg (default); d2: detectron2 .pkl")
    p.add_argument("--safetensors", action="store_true", help="write ours as .safetensors")
    p.add_argument("--prefix", help="d2 only: key prefix of the backbone in the detectron2 model "
                                    f"(default: {D2_PREFIXES['vit']} for ViT, {D2_PREFIXES['swin']} for Swin)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    suffix = args.output.suffix
    if args.format == "d2":
        if args.safetensors:
            p.error("--safetensors applies to --format ours")
        if suffix != ".pkl":
            p.error(f"--format d2 writes a detectron2 .pkl (loaded by exact key names); got '{args.output}'")
    else:
        if args.prefix is not None:
            p.error("--prefix applies to --format d2")
        if args.safetensors and suffix != ".safetensors":
            p.error(f"--safetensors needs an output ending in .safetensors (the loader picks the reader by suffix); "
                    f"got '{args.output}'")
        if not args.safetensors and suffix == ".safetensors":
            p.error("the output ends in .safetensors: add --safetensors")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    fmt = "d2" if args.format == "d2" else ("safetensors" if args.safetensors else "ours")
    try:
        local = Path(args.input).expanduser()
        out = check_output(args.output, force=args.force, inputs=[local] if local.exists() else [])
        model, kwargs, report, state, notes = convert(args.input, args)
        print(f"backbone: {describe_backbone(model)}")
        for note in notes:
            print(f"note: {note}")
        print(report)
        meta = {"backbone": type(model).__name__, "kwargs": kwargs, "source": str(args.input)}
        family = "vit" if isinstance(model, RoPEViT) else "swin"
        prefix = args.prefix if args.prefix is not None else D2_PREFIXES[family]
        write(state, out, fmt=fmt, meta=meta, prefix=prefix)
        # the written file must load into the same backbone, strictly (a .pkl through the restricted unpickler)
        written: Any = out
        if fmt == "d2":
            written = {k[len(prefix):]: v for k, v in load_any(out)["model"].items() if k.startswith(prefix)}
        check = load_pretrained((RoPEViT if family == "vit" else RoPESwin)(**kwargs), written)
        if sorted(check.loaded) != sorted(state):
            raise ToolError(f"the written file did not reload completely: {check}")
        where = f" (keys prefixed '{prefix}')" if fmt == "d2" else ""
        print(f"wrote {out}: {len(state)} tensors, {out.stat().st_size / 2**20:.1f} MB, format {fmt}{where}")
    except (ToolError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
