"""tools/gpu_check.py: the CPU dry run of every section (about 20 s on 2 cores), and the report's behaviour when
sections fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gpu_check.py"
SECTIONS = ["Environment", "SDPA kernels per attention kind", "Training steps (fp16 + GradScaler, bf16)",
            "Inference against the no-position floor", "cuda-marked tests", "torch.compile"]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(report: str, section: str) -> list[list[str]]:
    body = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ")][1:]  # without the header
    return [[c.strip() for c in line.split("|")[1:-1]] for line in lines]


def test_dry_run_runs_every_section(tmp_path):
    out = tmp_path / "report.md"
    assert _load().main(["--out", str(out), "--dry-run"]) == 0
    report = out.read_text()
    assert report.startswith("# RoPE-ViT / RoPE-Swin GPU check (CPU dry run, tiny sizes)")
    assert [line[3:] for line in report.splitlines() if line.startswith("## ")] == SECTIONS
    assert "ERROR" not in report and report.rstrip().endswith("Sections with errors: none.")

    sdpa = _rows(report, SECTIONS[1])
    assert [r[0] for r in sdpa] == ["ViT global", "ViT window, no padding", "ViT window, padded (boolean key mask)",
                                    "Swin window", "Swin shifted window (additive mask)",
                                    "Swin shifted window + RPB (float bias)"]
    assert all(r[-1] == "ok" and r[3].startswith("_scaled_dot_product") for r in sdpa)  # MATH always works
    assert sdpa[0][2] == "none" and sdpa[2][2].startswith("bool") and sdpa[4][2].startswith("bfloat16")

    train = _rows(report, SECTIONS[2])
    assert [(r[0].split()[0], r[3], r[4]) for r in train] == [(model, precision, "yes") for model in (
        "DINO", "Mask2Former") for precision in ("fp16", "bf16")]
    assert all(float(r[8]) > 0 for r in train)

    infer = _rows(report, SECTIONS[3])
    assert len(infer) == 18 and all(float(r[4]) > 0 for r in infer)
    assert [r[5] for r in infer if r[1] == "none (floor)"] == ["1.000"] * 6

    compiled = _rows(report, SECTIONS[5])
    assert [(r[0], r[1]) for r in compiled] == [("ViTDet RoPE-Mixed", "static"), ("ViTDet RoPE-Mixed", "dynamic")]
    assert float(compiled[0][2]) < 1e-4 and compiled[1][2].startswith("not in the dry run")
    assert "exited with 0" in report and "test_cuda.py::test_cuda_matches_cpu" in report


def _stub_plan(tmp_path: Path, budget: float = 60.0):
    from ropevit_dense.diagnostics.gpu_check import Plan

    return Plan(device="cpu", dry_run=True, root=ROOT, budget_s=budget)


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    from ropevit_dense.diagnostics import gpu_check, gpu_workloads

    def broken(plan):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(gpu_check, "sdpa_kernels", lambda plan: "| a |\n|---|\n| 1 |")
    monkeypatch.setattr(gpu_workloads, "inference", lambda plan: "| a |\n|---|\n| 1 |")
    monkeypatch.setattr(gpu_workloads, "compile_check", lambda plan, deadline: "| a |\n|---|\n| 1 |")
    monkeypatch.setattr(gpu_workloads, "training", broken)
    monkeypatch.setattr(gpu_workloads, "cuda_tests", lambda plan, timeout_s: "ran")
    out = tmp_path / "report.md"
    failed = gpu_check.run(_stub_plan(tmp_path), out)
    report = out.read_text()
    assert failed == [SECTIONS[2]]
    assert "RuntimeError: simulated out of memory" in report and "_FAILED, " in report
    assert report.index("## torch.compile") > report.index("simulated out of memory")
    assert report.count("_ok, ") == 5


def test_a_spent_budget_skips_the_remaining_sections(tmp_path, monkeypatch):
    from ropevit_dense.diagnostics import gpu_check

    calls = []
    monkeypatch.setattr(gpu_check, "environment", lambda plan: calls.append("env") or "| a |\n|---|")
    out = tmp_path / "report.md"
    failed = gpu_check.run(_stub_plan(tmp_path, budget=1e-9), out)
    assert calls == [] and failed == SECTIONS
    assert out.read_text().count("skipped: the time budget of 0 s is spent") == 6


def test_arguments(tmp_path, capsys):
    tool = _load()
    out = tmp_path / "report.md"
    out.write_text("a user's file")
    with pytest.raises(SystemExit):
        tool.main(["--out", str(out), "--dry-run"])
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert out.read_text() == "a user's file"
    with pytest.raises(SystemExit):
        tool.main(["--out", str(tmp_path / "missing" / "r.md"), "--dry-run"])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--out", str(tmp_path / "r.md"), "--dry-run", "--budget", "0"])
    if not torch.cuda.is_available():
        assert tool.main(["--out", str(tmp_path / "r.md")]) == 2
        assert "no CUDA device is available" in capsys.readouterr().err
        assert not (tmp_path / "r.md").exists()


def test_compile_cases_after_the_deadline_are_skipped(tmp_path):
    from ropevit_dense.diagnostics.gpu_workloads import compile_check

    table = compile_check(_stub_plan(tmp_path), deadline=0.0)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| ")][1:]
    assert [r[2] for r in rows] == ["skipped: the time budget is spent",
                                    "not in the dry run (tests/core/test_compile.py)"]
