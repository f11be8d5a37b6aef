"""The measuring sections of the GPU check (:mod:`.gpu_check`): training steps, inference against the floor, the
``cuda``-marked tests and torch.compile. Each returns a markdown table; a failed measurement is a row marked
``ERROR``, so the other rows and sections still run."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from typing import Any, Optional

import torch

from ..backbones import RoPESwin, RoPEViT
from .gpu_check import ERROR, Plan, first_line, md_table, peak_mb, reset_peak, sync


# -- 3. training steps ------------------------------------------------------------------------------------------------
def _train_run(plan: Plan, config: str, size: tuple[int, int], batch: int, precision: str) -> list[Any]:
    """Warm-up and timed training steps of a config's model: autocast + GradScaler (fp16) or autocast (bf16), with
    the config's optimizer, parameter groups and gradient clipping. Returns the report row's measurements."""
    from mmengine.optim import build_optim_wrapper

    from . import mm_models as mm

    cfg = mm.load_config(plan.root / config)
    mm.set_input_size(cfg, size)
    torch.manual_seed(0)
    model = mm.build_model(cfg).to(plan.device)
    wrapper_cfg = {k: v for k, v in cfg.optim_wrapper.items() if k not in ("loss_scale", "dtype", "use_fsdp")}
    wrapper = build_optim_wrapper(model, dict(wrapper_cfg, type="OptimWrapper"))
    clip = (wrapper_cfg.get("clip_grad") or {}).get("max_norm")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    device_type = plan.device.split(":")[0]
    scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")
    data = mm.synthetic_batch(model, cfg.default_scope, batch_size=batch, size=size)
    warmup, timed = plan.steps
    losses: list[float] = []
    base = reset_peak(plan.device)
    for step in range(warmup + timed):
        if step == warmup:
            sync(plan.device)
            start = time.perf_counter()
        loss, _ = mm.training_loss(model, data, autocast=dtype, seed=step)
        scaler.scale(loss).backward()
        scaler.unscale_(wrapper.optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(wrapper.optimizer)
        scaler.update()
        wrapper.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    sync(plan.device)
    elapsed = time.perf_counter() - start
    finite = all(math.isfinite(v) for v in losses)
    scale = f"{scaler.get_scale():.0f}" if precision == "fp16" else "-"
    return ["yes" if finite else f"{ERROR}: no", f"{losses[0]:.3f} -> {losses[-1]:.3f}", scale,
            peak_mb(plan.device, base), f"{batch * timed / elapsed:.2f}",
            _amp_wrapper_step(plan, model, cfg, data, dtype)]


def _amp_wrapper_step(plan: Plan, model: torch.nn.Module, cfg, data: dict, dtype: torch.dtype) -> str:
    """One ``train_step`` through mmengine's ``AmpOptimWrapper``, as the runner does it (GPU only)."""
    if not plan.device.startswith("cuda"):
        return "skipped (needs a GPU)"
    from mmengine.optim import build_optim_wrapper

    try:
        wrapper_cfg = dict(cfg.optim_wrapper, type="AmpOptimWrapper", loss_scale="dynamic",
                           dtype="float16" if dtype == torch.float16 else "bfloat16")
        log_vars = model.train_step(data, build_optim_wrapper(model, wrapper_cfg))
        loss = float(log_vars["loss"])
        return f"ok, loss {loss:.3f}" if math.isfinite(loss) else f"{ERROR}: non-finite loss {loss}"
    except Exception as exc:  # noqa: BLE001
        return first_line(exc)


def training(plan: Plan) -> str:
    rows = []
    for label, config, size, batch in plan.train_cases:
        for precision in ("fp16", "bf16"):
            try:
                rows.append([label, f"{size[0]}x{size[1]}", batch, precision,
                             *_train_run(plan, config, size, batch, precision)])
            except Exception as exc:  # noqa: BLE001
                rows.append([label, f"{size[0]}x{size[1]}", batch, precision, first_line(exc), *["-"] * 5])
            finally:
                if plan.device.startswith("cuda"):
                    torch.cuda.empty_cache()
    return md_table(["model", "input", "images / step", "precision", "finite losses", "loss first -> last",
                   "final loss scale", "peak memory (MB)", "images/s", "mmengine AmpOptimWrapper step"], rows)


# -- 4. inference against the floor ------------------------------------------------------------------------------------
def _time_forward(plan: Plan, model: torch.nn.Module, x: torch.Tensor, dtype: Optional[torch.dtype]
                  ) -> tuple[float, str]:
    """images/s and peak memory of ``model(x)`` (no grad; autocast to ``dtype`` unless None)."""
    warmup, timed = plan.steps[0] + 1, plan.steps[1] * 2
    with torch.no_grad(), torch.autocast(plan.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
        for _ in range(warmup):
            model(x)
        base = reset_peak(plan.device)
        sync(plan.device)
        start = time.perf_counter()
        for _ in range(timed):
            model(x)
        sync(plan.device)
    return x.shape[0] * timed / (time.perf_counter() - start), peak_mb(plan.device, base)


def inference(plan: Plan) -> str:
    dtype = torch.bfloat16
    layouts = {"global": {}, "ViTDet (window, global 2,5,8,11)": dict(window_size=plan.window,
                                                                      global_block_indexes=(2, 5, 8, 11))}
    depth = 12
    if plan.dry_run:
        depth, layouts["ViTDet (window, global 2,5,8,11)"]["global_block_indexes"] = 3, (2,)
    rows = []
    for layout, extra in layouts.items():
        for side, batch in plan.inference_sizes.items():
            floor = None
            for mode in (None, "axial", "mixed"):
                try:
                    torch.manual_seed(0)
                    model = RoPEViT(depth=depth, rope_type=mode, use_cls_token=False, **plan.vit, **extra)
                    model = model.to(plan.device).eval()
                    x = torch.randn(batch, 3, side, side, device=plan.device)
                    ips, mem = _time_forward(plan, model, x, dtype)
                    floor = ips if mode is None else floor
                    ratio = f"{floor / ips:.3f}" if floor else "-"
                    rows.append([layout, mode or "none (floor)", f"{side}x{side}", batch, f"{ips:.2f}", ratio, mem])
                except Exception as exc:  # noqa: BLE001
                    rows.append([layout, mode or "none (floor)", f"{side}x{side}", batch, first_line(exc), "-", "-"])
                finally:
                    model = None
                    if plan.device.startswith("cuda"):
                        torch.cuda.empty_cache()
    arch = "ViT-B/16" if not plan.dry_run else "tiny ViT"
    return (f"{arch}, {depth} blocks, bf16 autocast, no grad; x floor = time per image relative to no position "
            "encoding.\n\n" + md_table(["layout", "position", "input", "batch", "images/s", "x floor",
                                      "peak memory (MB)"], rows))


# -- 5. torch.compile ------------------------------------------------------------------------------------------------
def compile_check(plan: Plan, deadline: float = math.inf) -> str:
    """Parity and speed-up of compiled backbones; cases that would start after ``deadline`` (``time.perf_counter``
    seconds) are reported as skipped."""
    from torch._dynamo.utils import counters

    # window-padded grids at both sides (a padded and an unpadded grid are two graphs, also with dynamic=True)
    sides = (80, 112) if plan.dry_run else (768, 1024)
    # the dry run traces one window block (dynamo's tracing and inductor's code generation are slow on a CPU)
    depth, global_blocks = (1, ()) if plan.dry_run else (12, (2, 5, 8, 11))
    cases = {
        "ViTDet RoPE-Mixed": lambda: RoPEViT(depth=depth, rope_type="mixed", window_size=plan.window,
                                             global_block_indexes=global_blocks, use_cls_token=False, **plan.vit),
        "Swin RoPE-Mixed + RPB": lambda: RoPESwin(
            depths=(2, 2) if plan.dry_run else (2, 2, 6, 2), window_size=4 if plan.dry_run else 7, rope_type="mixed",
            use_rpb=True, **(dict(embed_dim=32, num_heads=(1, 2)) if plan.dry_run else {})),
    }
    if plan.dry_run:  # the script's path once, cheaply
        cases.pop("Swin RoPE-Mixed + RPB")
    rows = []
    for name, factory in cases.items():
        for dynamic in (False, True):
            if dynamic and plan.dry_run:  # dynamo's symbolic tracing alone takes ~15 s on a CPU
                rows.append([name, "dynamic", "not in the dry run (tests/core/test_compile.py)", "-", "-"])
                continue
            if dynamic and name.startswith("Swin"):  # see SWIN_DYNAMIC in tests/core/test_compile.py
                rows.append([name, "dynamic", "not run: inductor's code generation of the shifted-window graph "
                             "with symbolic sizes takes many minutes; Swin compiles with static shapes", "-", "-"])
                continue
            if time.perf_counter() > deadline:
                rows.append([name, "dynamic" if dynamic else "static", "skipped: the time budget is spent", "-", "-"])
                continue
            try:
                torch._dynamo.reset()
                counters.clear()
                torch.manual_seed(0)
                model = factory().to(plan.device).eval()
                compiled = torch.compile(model, backend=plan.compile_backend, dynamic=dynamic)
                graphs, errors, speed = [], [], []
                for side in sides:
                    x = torch.randn(1, 3, side, side, device=plan.device)
                    with torch.no_grad():
                        want = model(x)
                        start = time.perf_counter()
                        got = compiled(x)  # compiles (or recompiles) for this size
                        sync(plan.device)
                        first = time.perf_counter() - start
                        eager, _ = _time_forward(plan, model, x, None)
                        fast, _ = _time_forward(plan, compiled, x, None)
                    graphs.append(int(counters["stats"]["unique_graphs"]))
                    errors.append(max(float((a - b).abs().max()) for a, b in zip(got, want)))
                    speed.append(f"{side}: {fast / eager:.2f}x (compile {first:.0f} s)")
                recompiled = graphs[1] - graphs[0]
                rows.append([name, "dynamic" if dynamic else "static", f"{max(errors):.1e}",
                             "; ".join(speed), recompiled])
            except Exception as exc:  # noqa: BLE001
                rows.append([name, "dynamic" if dynamic else "static", first_line(exc), "-", "-"])
    return (f"Backend {plan.compile_backend}, fp32 (TF32 off), eval, batch 1, two input sides each; speed-up = "
            "compiled images/s over eager.\n\n"
            + md_table(["backbone", "shapes", "max abs(compiled - eager)", "speed-up per side",
                      "graphs compiled for the 2nd side"], rows))


# -- 6. cuda-marked tests -------------------------------------------------------------------------------------------
def cuda_tests(plan: Plan, timeout_s: float) -> str:
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs"]
    if plan.dry_run:  # CI: collect only (they skip without a GPU anyway), from the file that holds most of them
        cmd += ["--collect-only", str(plan.root / "tests" / "core" / "test_cuda.py")]
    else:
        cmd += [str(plan.root / "tests")]
    try:
        proc = subprocess.run(cmd, cwd=plan.root, capture_output=True, text=True, timeout=max(timeout_s, 10))
    except subprocess.TimeoutExpired:
        return f"{ERROR}: `{' '.join(cmd[1:])}` did not finish within {timeout_s:.0f} s"
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    status = "" if proc.returncode == 0 else f"{ERROR}: "  # 5 = nothing collected, also an error here
    return f"{status}`pytest {' '.join(cmd[3:])}` exited with {proc.returncode}:\n\n```\n{tail}\n```"
