"""RoPESwin: parity with golden outputs of the naver reference, shapes at odd sizes, windows, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ropevit_dense.backbones import RoPESwin
from ropevit_dense.checkpoints import CheckpointError
from ropevit_dense.checkpoints.load import load_pretrained

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "naver_swin_golden.pt"
ATOL = 1e-4


def _golden():
    return torch.load(GOLDEN, map_location="cpu", weights_only=True)


def _from_reference_config(cfg: dict) -> RoPESwin:
    return RoPESwin(
        embed_dim=cfg["embed_dim"], depths=tuple(cfg["depths"]), num_heads=tuple(cfg["num_heads"]),
        patch_size=cfg["patch_size"], window_size=cfg["window_size"], mlp_ratio=cfg["mlp_ratio"],
        rope_type="mixed" if cfg["rope_mixed"] else "axial", rope_theta=cfg["rope_theta"], use_rpb=cfg["use_rpb"],
    ).eval()


def _center_embed(table: torch.Tensor, window: int) -> torch.Tensor:
    """Place a smaller window's RPB table at the centre of a ``window`` one (same relative offsets)."""
    old = int(round(table.shape[0] ** 0.5))
    new = 2 * window - 1
    out = torch.zeros(new, new, table.shape[1])
    off = (new - old) // 2
    out[off:off + old, off:off + old] = table.view(old, old, -1)
    return out.view(new * new, -1)


@pytest.mark.parametrize("case", ["axial_w7", "mixed_w7", "mixed_rpb_w7", "axial_w14", "mixed_w14", "mixed_rpb_w14"])
def test_matches_naver_reference(case):
    data = _golden()[case]
    model = _from_reference_config(data["config"])
    sd = dict(data["state_dict"])
    w = data["config"]["window_size"]
    for k, v in sd.items():
        # The reference shrinks the window of a stage whose map is smaller than it (here 7x7 maps with window
        # 14), so that stage's RPB table is built for window 7. Ours keeps window 14 and masks the padding: the
        # same relative offsets sit at the centre of its table.
        if k.endswith("relative_position_bias_table") and v.shape[0] != (2 * w - 1) ** 2:
            sd[k] = _center_embed(v, w)
    report = load_pretrained(model, {"model": sd})
    assert report.ok, str(report)
    assert report.initialized == [f"norm{i}.{p}" for i in range(len(data["config"]["depths"]) - 1)
                                  for p in ("weight", "bias")]
    with torch.no_grad():
        stages = model.stage_outputs(data["input"])
        final = model(data["input"])[-1].permute(0, 2, 3, 1)
    assert len(stages) == len(data["stage_outputs"])
    for i, (got, ref) in enumerate(zip(stages, data["stage_outputs"])):
        diff = (got - ref).abs().max().item()
        assert diff <= ATOL, f"{case} stage {i}: max abs diff {diff:.2e}"
    diff = (final - data["final_norm"]).abs().max().item()
    assert diff <= ATOL, f"{case} final norm: max abs diff {diff:.2e}"


TINY_SWIN = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 8), window_size=7)


@pytest.mark.parametrize("hw, expected", [
    ((33, 47), [(9, 12), (5, 6), (3, 3), (2, 2)]),
    ((112, 137), [(28, 35), (14, 18), (7, 9), (4, 5)]),
    ((511, 511), [(128, 128), (64, 64), (32, 32), (16, 16)]),
])
@pytest.mark.parametrize("rope_type, use_rpb", [("axial", False), ("mixed", True)])
def test_exact_output_shapes_at_odd_sizes(hw, expected, rope_type, use_rpb):
    m = RoPESwin(**TINY_SWIN, rope_type=rope_type, use_rpb=use_rpb).eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *hw))
    assert [tuple(o.shape) for o in outs] == [(1, 32 * 2 ** i, *s) for i, s in enumerate(expected)]


@pytest.mark.parametrize("rope_type", ["axial", "mixed"])
def test_padding_is_invisible(rope_type):
    """A 15x13 map inside one window: windows 16 and 24 pad differently, masked keys make them agree."""
    torch.manual_seed(0)
    kw = dict(embed_dim=32, depths=(2,), num_heads=(2,), rope_type=rope_type)
    a = RoPESwin(**kw, window_size=16).eval()
    b = RoPESwin(**kw, window_size=24).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 60, 52)
    with torch.no_grad():
        torch.testing.assert_close(a.stage_outputs(x)[0], b.stage_outputs(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rope_type", ["axial", "mixed"])
def test_bf16_autocast_is_finite_and_close(rope_type):
    torch.manual_seed(0)
    m = RoPESwin(**TINY_SWIN, rope_type=rope_type, use_rpb=True).eval()
    x = torch.randn(1, 3, 150, 170)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    for r, lo in zip(ref, low):
        assert torch.isfinite(lo).all()
        assert (lo.float() - r).norm() / r.norm() < 0.05


def test_larger_window_extrapolates_and_resizes_rpb():
    torch.manual_seed(0)
    src = RoPESwin(**TINY_SWIN, rope_type="mixed", use_rpb=True)
    dst = RoPESwin(**{**TINY_SWIN, "window_size": 14}, rope_type="mixed", use_rpb=True).eval()
    report = load_pretrained(dst, src.state_dict())
    assert report.ok
    assert len(report.resized) == 8 and "(169, 2) -> (729, 2)" in report.resized[0]
    torch.testing.assert_close(dst.layers[1].blocks[0].attn.rope.freqs, src.layers[1].blocks[0].attn.rope.freqs)
    with torch.no_grad():
        assert all(torch.isfinite(o).all() for o in dst(torch.randn(1, 3, 200, 230)))


def test_frozen_stages_and_checkpointing():
    m = RoPESwin(**TINY_SWIN, frozen_stages=2).train()
    assert not any(p.requires_grad for p in m.patch_embed.parameters())
    assert not any(p.requires_grad for p in m.layers[1].parameters())
    assert all(p.requires_grad for p in m.layers[2].parameters())
    torch.manual_seed(0)
    a = RoPESwin(**TINY_SWIN, use_rpb=True).train()
    b = RoPESwin(**TINY_SWIN, use_rpb=True, with_cp=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 72)
    sum(o.square().mean() for o in a(x)).backward()
    sum(o.square().mean() for o in b(x)).backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rope_type="helix"), "unknown RoPE mode"),
    (dict(window_size=0), "window_size must be an int >= 1"),
    (dict(num_heads=(2, 4)), "same length"),
    (dict(out_indices=(4,)), "out_indices"),
    (dict(embed_dim=20), "divisible by 4"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RoPESwin(**{**TINY_SWIN, **kwargs})


def test_checkpoint_of_another_architecture_is_refused():
    from ropevit_dense.backbones import RoPEViT

    vit = RoPEViT(embed_dim=64, depth=2, num_heads=4)
    with pytest.raises(CheckpointError, match="looks like a ViT checkpoint, but the model is RoPESwin"):
        load_pretrained(RoPESwin(**TINY_SWIN), vit.state_dict())
