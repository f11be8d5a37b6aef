"""tools/benchmark.py runs end to end on a small configuration and writes its tables."""

import csv
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_markdown_and_csv(tmp_path, capsys):
    bench = _load()
    md, table = tmp_path / "bench.md", tmp_path / "bench.csv"
    assert bench.main(["--arch", "vit-s", "--sizes", "64", "--modes", "none,mixed", "--layouts", "global,vitdet",
                       "--repeats", "1", "--md", str(md), "--csv", str(table)]) == 0
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| backbone | layout | position | input | median latency (s) | x floor")
    body = [line.split("|")[1:-1] for line in lines[2:]]
    assert [(r[1].strip(), r[2].strip(), r[3].strip()) for r in body] == [
        ("global", "none", "64x64"), ("global", "mixed", "64x64"), ("vitdet", "none", "64x64"),
        ("vitdet", "mixed", "64x64")]
    assert body[0][5].strip() == "1.000"
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 4 and all(float(r["median_s"]) > 0 and float(r["peak_increase_mb"]) >= 0 for r in rows)


def test_benchmark_rejects_bad_arguments(capsys):
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--modes", "spiral"])
    assert "unknown position mode 'spiral'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "224,abc"])
    assert "--sizes must be a comma list of integers" in capsys.readouterr().err
