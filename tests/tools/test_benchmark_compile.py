"""tools/benchmark.py --compile: compiled rows next to their eager twins, with the speed-up over eager."""

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(mode, median, compiled):
    return dict(arch="vit-b", layout="vitdet", size=512, mode=mode, median_s=median + 0.5, min_s=median,
                peak_increase_mb=10.0, throughput=1 / median, compile=compiled)


def test_speed_up_column_compares_each_compiled_row_with_its_eager_row():
    bench = _load()
    rows = [_row("none", 1.0, False), _row("mixed", 1.2, False), _row("none", 0.5, True), _row("mixed", 0.4, True)]
    lines = bench.markdown(rows).splitlines()
    assert lines[0].endswith("| speed-up over eager |")
    body = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert [r[2] for r in body] == ["none", "mixed", "none (compiled)", "mixed (compiled)"]
    assert [r[-1] for r in body] == ["-", "-", "2.00", "3.00"]
    # compiled rows against the compiled floor; the ratios compare the fastest steps (min_s), not the medians
    assert [r[7] for r in body] == ["1.000", "1.200", "1.000", "0.800"]
    assert "speed-up" not in bench.markdown(rows[:2]).splitlines()[0]


def test_compile_rows_are_timed_with_their_eager_twins():
    bench = _load()
    args = bench.parse_args(["--arch", "vit-s", "--sizes", "64,96", "--modes", "none,mixed", "--compile"])
    groups = bench.row_groups(args)
    assert len(groups) == 2
    assert [(s["mode"], s["compile"]) for s in groups[0]] == [("none", False), ("mixed", False), ("none", True),
                                                              ("mixed", True)]
    with pytest.raises(SystemExit):
        bench.parse_args(["--compile", "--warmup", "0"])


@pytest.mark.slow
def test_benchmark_compile_end_to_end(tmp_path):
    """Compiles ViT-S twice (no position encoding and RoPE-Mixed): a minute or two on 2 cores."""
    bench = _load()
    md = tmp_path / "bench.md"
    assert bench.main(["--arch", "vit-s", "--sizes", "64", "--modes", "none,mixed", "--repeats", "2", "--compile",
                       "--md", str(md)]) == 0
    body = [[c.strip() for c in line.split("|")[1:-1]] for line in md.read_text().splitlines()[2:]]
    assert [r[2] for r in body] == ["none", "mixed", "none (compiled)", "mixed (compiled)"]
    assert all(float(r[-1]) > 0 for r in body[2:])
