"""The GPU acceptance check behind ``tools/gpu_check.py``: one run on a machine with one GPU, a markdown report.

Sections (each reports its own errors; the report is written as it goes, so a crash or a time-out keeps what was
measured):

1. environment: torch, CUDA, the GPU, mmcv's compiled ops;
2. SDPA kernels: which ``scaled_dot_product_attention`` backend each kind of attention call gets (ViT global,
   ViT windows with and without padding, Swin windows with and without shift), and which backends accept it;
3. training steps: fp16 + ``GradScaler`` and bf16 steps of DINO RoPE-ViT-B (1024 x 1024) and Mask2Former RoPE-Swin-T
   (512 x 512): finite losses, peak memory, images/s; one step through mmengine's ``AmpOptimWrapper`` too;
4. inference: images/s and peak memory of RoPE-ViT-B against the no-position floor at 512, 1024 and 2048;
5. the ``cuda``-marked tests;
6. torch.compile on the GPU: parity with eager, speed-up, a second input size with ``dynamic=True``.

``dry_run=True`` runs the same code on the CPU at tiny sizes (the CI test of this module).
"""

from __future__ import annotations

import dataclasses
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..backbones import RoPESwin, RoPEViT

BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to run: the real sizes on a GPU, or tiny ones on the CPU (``dry_run``)."""

    device: str
    dry_run: bool
    root: Path
    budget_s: float

    @property
    def vit(self) -> dict:
        return dict(embed_dim=64, num_heads=2) if self.dry_run else dict(embed_dim=768, num_heads=12)

    @property
    def window(self) -> int:
        return 4 if self.dry_run else 14

    @property
    def patch(self) -> int:
        return 16

    @property
    def train_cases(self) -> list[tuple[str, str, tuple[int, int], int]]:
        """(label, config, input size, images per step)."""
        if self.dry_run:
            return [("DINO RoPE-ViT (tiny)", "configs/detection/mmdet/tiny/"
                     "dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py", (128, 160), 2),
                    ("Mask2Former RoPE-Swin (tiny)", "configs/segmentation/mmseg/tiny/"
                     "mask2former_ropeswin-tiny-mixed_1xb4-400i_tinyade20k-64x64.py", (64, 64), 2)]
        return [("DINO RoPE-ViT-B", "configs/detection/mmdet/dino-4scale_ropevit-b16-mixed_8xb2-90k_coco.py",
                 (1024, 1024), 2),
                ("Mask2Former RoPE-Swin-T", "configs/segmentation/mmseg/"
                 "mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py", (512, 512), 2)]

    @property
    def inference_sizes(self) -> dict[int, int]:
        """input side -> images per forward."""
        return {64: 2, 96: 1, 128: 1} if self.dry_run else {512: 8, 1024: 2, 2048: 1}

    @property
    def compile_backend(self) -> str:
        """Inductor on the GPU; the dry run traces with dynamo only (inductor on a CPU: tests/core/test_compile.py)"""
        return "eager" if self.dry_run else "inductor"

    @property
    def steps(self) -> tuple[int, int]:
        """(warm-up, timed) iterations."""
        return (1, 1) if self.dry_run else (2, 5)


class _RecordSDPA(TorchFunctionMode):
    """Records the arguments of every ``F.scaled_dot_product_attention`` call made under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple, dict]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls.append((tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                               {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> int:
    if not device.startswith("cuda"):
        return 0
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_mb(device: str, base: int) -> str:
    if not device.startswith("cuda"):
        return "n/a (CPU)"
    return f"{(torch.cuda.max_memory_allocated() - base) / 2**20:.0f}"


ERROR = "ERROR"  # marks a failed measurement in the report


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{ERROR} {type(exc).__name__}: {text[0][:160] if text else ''}".replace("|", "/")


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- 1. environment ---------------------------------------------------------------------------------------------------
def environment(plan: Plan) -> str:
    rows = [["python", platform.python_version()], ["torch", torch.__version__],
            ["CUDA (torch build)", torch.version.cuda or "none"], ["device", plan.device]]
    if plan.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(plan.device)
        rows += [["GPU", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}"],
                 ["cuDNN", str(torch.backends.cudnn.version())],
                 ["bf16 supported", str(torch.cuda.is_bf16_supported())]]
    for name in ("mmengine", "mmcv", "mmdet", "mmseg"):
        try:
            module = __import__(name)
            rows.append([name, getattr(module, "__version__", "?")])
        except Exception as exc:  # noqa: BLE001 - report whatever stops the import
            rows.append([name, first_line(exc)])
    rows.append(["mmcv deformable attention on this device", _msda_status(plan.device)])
    return md_table(["item", "value"], rows)


def _msda_status(device: str) -> str:
    """mmcv's multi-scale deformable attention (DINO, Mask2Former) on ``device``: needs mmcv built with its CUDA ops."""
    try:
        from mmcv.ops import MultiScaleDeformableAttention

        attn = MultiScaleDeformableAttention(embed_dims=32, num_heads=2, num_levels=1, num_points=2,
                                             batch_first=True).to(device)
        q = torch.randn(1, 16, 32, device=device)
        out = attn(q, value=q, reference_points=torch.rand(1, 16, 1, 2, device=device),
                   spatial_shapes=torch.tensor([[4, 4]], device=device),
                   level_start_index=torch.tensor([0], device=device))
        return "ok" if torch.isfinite(out).all() else f"{ERROR}: non-finite output"
    except Exception as exc:  # noqa: BLE001
        return f"{first_line(exc)} - rebuild mmcv with its CUDA ops on this machine (make setup)"


# -- 2. SDPA kernels --------------------------------------------------------------------------------------------------
def _attention_kinds(plan: Plan) -> list[tuple[str, Callable[[], torch.nn.Module], tuple[int, int], Callable]]:
    """(kind, backbone factory, input size, which recorded calls belong to the kind)."""
    w, p = plan.window, plan.patch
    fit, padded = (p * w * 4, p * w * 4), (p * (w * 4 + w // 2), p * (w * 4 + w // 2))
    swin_fit = (4 * w * 4, 4 * w * 4)  # stage 1 of a Swin: 16 x 16 windows, no padding
    swin_dim = dict(embed_dim=32, num_heads=(1,)) if plan.dry_run else dict(embed_dim=96, num_heads=(3,))

    def vit(window: int):
        return lambda: RoPEViT(depth=1, rope_type="mixed", window_size=window, use_cls_token=False, **plan.vit)

    def swin(rpb: bool):
        return lambda: RoPESwin(depths=(2,), window_size=w, rope_type="mixed", use_rpb=rpb, out_indices=(0,),
                                **swin_dim)

    def first(calls):
        return calls[:1]

    def second(calls):
        return calls[1:2]

    return [
        ("ViT global", vit(0), (p * w * 4, p * w * 4), first),
        ("ViT window, no padding", vit(w), fit, first),
        ("ViT window, padded (boolean key mask)", vit(w), padded, first),
        ("Swin window", swin(False), swin_fit, first),
        ("Swin shifted window (additive mask)", swin(False), swin_fit, second),
        ("Swin shifted window + RPB (float bias)", swin(True), swin_fit, second),
    ]


def _chosen_kernel(args: tuple, kwargs: dict) -> str:
    """The ``aten::_scaled_dot_product_*`` op the dispatcher picks for this call (profiler op names)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(*args, **kwargs)
    names = sorted({e.key for e in prof.key_averages() if e.key.startswith("aten::_scaled_dot_product")
                    or e.key.startswith("aten::_efficient_attention") or e.key.startswith("aten::_flash_attention")})
    return ", ".join(n.removeprefix("aten::") for n in names) or "?"


def sdpa_kernels(plan: Plan) -> str:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = torch.float16 if plan.device.startswith("cuda") else torch.bfloat16
    rows = []
    for kind, factory, size, pick in _attention_kinds(plan):
        try:
            model = factory().to(plan.device).eval()
            rec = _RecordSDPA()
            with torch.no_grad(), torch.autocast(plan.device.split(":")[0], dtype=dtype), rec:
                model(torch.randn(1, 3, *size, device=plan.device))
            (args, kwargs), = pick(rec.calls)
        except Exception as exc:  # noqa: BLE001
            rows.append([kind, "-", "-", first_line(exc)] + ["-"] * len(BACKENDS))
            continue
        q, mask = args[0], kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        mask_desc = "none" if mask is None else f"{str(mask.dtype).removeprefix('torch.')} {tuple(mask.shape)}"
        verdicts = []
        for name in BACKENDS:
            try:
                with torch.no_grad(), sdpa_kernel([getattr(SDPBackend, name)]):
                    out = F.scaled_dot_product_attention(*args, **kwargs)
                sync(plan.device)
                verdicts.append("ok" if torch.isfinite(out).all() else "non-finite")
            except Exception as exc:  # noqa: BLE001 - "not available for these inputs" is the answer
                verdicts.append(f"no ({first_line(exc).removeprefix(ERROR + ' ')[:60]})")
        with torch.no_grad():
            chosen = _chosen_kernel(args, kwargs)
        rows.append([kind, f"{tuple(q.shape)} {str(q.dtype).removeprefix('torch.')}", mask_desc, chosen, *verdicts])
    return md_table(["attention", "q (B x windows, heads, N, head_dim)", "mask", "default kernel", *BACKENDS], rows)


# -- the report -----------------------------------------------------------------------------------------------------
class Report:
    """A markdown report written section by section (flushed after each), so an interrupted run keeps its results."""

    def __init__(self, path: Path, title: str) -> None:
        self.path, self.failed = path, []
        path.write_text(f"# {title}\n\n")

    def add(self, name: str, body: str, seconds: float, ok: bool = True) -> None:
        if not ok:
            self.failed.append(name)
        with self.path.open("a") as fh:
            fh.write(f"## {name}\n\n{body.rstrip()}\n\n_{'ok' if ok else 'FAILED'}, {seconds:.0f} s_\n\n")


def run(plan: Plan, out: Path, log: Optional[Callable[[str], None]] = None) -> list[str]:
    """Run every section into ``out``; returns the names of the sections that failed (empty: all ran)."""
    log = log or (lambda msg: None)
    start = time.perf_counter()
    if plan.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # compile parity in fp32
        torch.backends.cudnn.allow_tf32 = False
    title = "RoPE-ViT / RoPE-Swin GPU check" + (" (CPU dry run, tiny sizes)" if plan.dry_run else "")
    report = Report(out, title)
    from . import gpu_workloads as work

    sections: list[tuple[str, Callable[[], str]]] = [
        ("Environment", lambda: environment(plan)),
        ("SDPA kernels per attention kind", lambda: sdpa_kernels(plan)),
        ("Training steps (fp16 + GradScaler, bf16)", lambda: work.training(plan)),
        ("Inference against the no-position floor", lambda: work.inference(plan)),
        # the tests before compilation, whose duration varies most; it stops starting cases at the budget
        ("cuda-marked tests", lambda: work.cuda_tests(plan, plan.budget_s - (time.perf_counter() - start))),
        ("torch.compile", lambda: work.compile_check(plan, deadline=start + plan.budget_s)),
    ]
    for name, section in sections:
        left = plan.budget_s - (time.perf_counter() - start)
        if left <= 0:
            report.add(name, f"skipped: the time budget of {plan.budget_s:.0f} s is spent", 0.0, ok=False)
            continue
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            body = section()
            ok = ERROR not in body
        except Exception:  # noqa: BLE001 - one section's failure must not stop the others
            body, ok = "```\n" + traceback.format_exc(limit=6) + "```", False
        report.add(name, body, time.perf_counter() - t0, ok)
        log(f"{name}: {'ok' if ok else 'FAILED'} ({time.perf_counter() - t0:.0f} s)")
    with out.open("a") as fh:
        fh.write(f"Total {time.perf_counter() - start:.0f} s. Sections with errors: "
                 f"{', '.join(report.failed) or 'none'}.\n")
    return report.failed
