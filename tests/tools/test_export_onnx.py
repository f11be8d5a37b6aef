"""tools/export_onnx.py: exported backbones run in onnxruntime at sizes other than the export size, matching torch."""

from __future__ import annotations

import pytest
import torch

from ropevit_dense import RoPESwin, RoPEViT

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript", reason="torch.onnx's dynamo exporter needs onnxscript")

ATOL = 1e-4
TINY_VIT = dict(embed_dim=64, depth=3, num_heads=2, init_values=1.0)
CASES = {
    # name: (backbone, two check sizes (H, W), none equal to the export size)
    "vit-mixed-global-cls": (lambda: RoPEViT(**TINY_VIT, rope_type="mixed"), [(64, 96), (160, 112)]),
    "vit-axial-windowed+global": (
        lambda: RoPEViT(**TINY_VIT, rope_type="axial", window_size=2, global_block_indexes=(1,)),
        [(64, 96), (160, 64)]),
    "vit-ape": (lambda: RoPEViT(**TINY_VIT, rope_type=None, use_ape=True), [(224, 224), (96, 144)]),
    "swin-mixed-rpb": (lambda: RoPESwin(embed_dim=32, depths=(1, 2), num_heads=(2, 4), window_size=4,
                                        rope_type="mixed", use_rpb=True), [(64, 96), (160, 64)]),
}


@pytest.fixture(scope="module")
def exp(load_tool):
    return load_tool("export_onnx")


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("name", list(CASES))
def test_onnxruntime_matches_torch_at_other_sizes(exp, tmp_path, name):
    build, sizes = CASES[name]
    model = _randomize(build())
    m = exp.size_multiple(model)
    size = exp.default_export_size(model, m)
    assert size not in sizes
    path = tmp_path / f"{name}.onnx"
    info = exp.export(model, path, size)
    assert info["ropevit_dense.size_multiple"] == str(m)
    assert info.items() <= exp.read_metadata(path).items()
    for hw, diff in exp.verify(path, model, sizes, batch=2):
        assert diff <= ATOL, f"{name} at {hw}: max abs diff {diff:.2e}"
    with pytest.raises(exp.ToolError, match=f"not a multiple of {m}"):
        exp.verify(path, model, [(2 * m, 2 * m + 8)])
    if isinstance(model, RoPESwin):  # a single window in the last stage takes the unshifted branch: not exported
        assert info["ropevit_dense.height_range"].startswith(f"{2 * m}-")
        with pytest.raises(exp.ToolError, match="outside the range"):
            exp.verify(path, model, [(m, m)])


def test_command_line_export_and_verify(exp, tmp_path, capsys):
    out = tmp_path / "vit.onnx"
    argv = [str(out), "--backbone", "vit-s", "--embed-dim", "64", "--depth", "1", "--num-heads", "2",
            "--random-weights", "--verify", "64x96", "128"]
    assert exp.main(argv) == 0
    printed = capsys.readouterr().out
    assert "input height and width must be multiples of 16" in printed
    assert printed.count("max abs diff onnxruntime vs torch") == 2
    diffs = [float(line.rsplit("=", 1)[1]) for line in printed.splitlines() if "max abs diff" in line]
    assert all(d <= ATOL for d in diffs)

    assert exp.main(argv) == 2  # the file exists now
    assert "exists; pass --force" in capsys.readouterr().err
    assert exp.main([*argv[:-3], "--force", "--verify", "72x96"]) == 2  # checked before exporting
    assert "not multiples of 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        exp.main([str(tmp_path / "vit.pt"), "--backbone", "vit-s"])
    assert "must end with .onnx" in capsys.readouterr().err
    assert exp.main([str(tmp_path / "x.onnx"), "--backbone", "vit-q"]) == 2
    assert "unknown backbone 'vit-q'" in capsys.readouterr().err
