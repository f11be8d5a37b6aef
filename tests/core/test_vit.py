"""RoPEViT: ViTDet windows, shapes at odd sizes, precision, freezing, bad input."""

from __future__ import annotations

import pytest
import torch

from ropevit_dense.backbones import RoPEViT
from ropevit_dense.layers import Attention
from ropevit_dense.rope import grid_coords, mixed_frequencies, rope_table

TINY = dict(embed_dim=64, depth=4, num_heads=4, init_values=1.0)  # LayerScale 1: every block matters


def _pair(**kw):
    """An all-global model and a windowed one with the same weights."""
    torch.manual_seed(0)
    glob = RoPEViT(**TINY, use_cls_token=False, **{k: v for k, v in kw.items() if k != "window_size"}).eval()
    win = RoPEViT(**TINY, window_size=kw.get("window_size", 7), global_block_indexes=(1,),
                  **{k: v for k, v in kw.items() if k != "window_size"}).eval()
    win.load_state_dict(glob.state_dict())
    return glob, win


@pytest.mark.parametrize("rope_type", ["axial", "mixed"])
@pytest.mark.parametrize("window", [14, 16])  # exactly the grid, and larger than it (padded, masked)
def test_windows_covering_the_grid_equal_global_attention(rope_type, window):
    glob, win = _pair(rope_type=rope_type, window_size=window, use_ape=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(win(x)[0], glob(x)[0], rtol=1e-5, atol=1e-5)


def test_smaller_windows_do_change_the_result():
    glob, win = _pair(rope_type="mixed", window_size=7)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (win(x)[0] - glob(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("rope_type", ["axial", "mixed"])
def test_window_local_rope_equals_global_coordinates(rope_type):
    """Attention inside one window gives the same output with local (0..w-1) or global coordinates."""
    torch.manual_seed(0)
    attn = Attention(32, 2).eval()
    f = mixed_frequencies(16, 2, generator=torch.Generator().manual_seed(3))
    if rope_type == "axial":
        f = f.clone()
        f[:] = mixed_frequencies(16, 2, random_angle=False)
    local = grid_coords(7, 7)
    shifted = local + torch.tensor([21.0, 35.0])  # the window at global offset (x=21, y=35)
    x = torch.randn(3, 49, 32)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, rope_table(f, local)), attn(x, rope_table(f, shifted)),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", [(33, 47), (112, 137), (511, 511)])
@pytest.mark.parametrize("layout", ["global", "vitdet"])
def test_exact_output_shapes_at_odd_sizes(hw, layout):
    kw = dict(window_size=5, global_block_indexes=(1, 3)) if layout == "vitdet" else {}
    m = RoPEViT(**TINY, rope_type="mixed", use_ape=True, out_indices=(1, 3), **kw).eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *hw))
    expected = (1, 64, -(-hw[0] // 16), -(-hw[1] // 16))
    assert [tuple(o.shape) for o in outs] == [expected, expected]


@pytest.mark.parametrize("rope_type", ["axial", "mixed", None])
def test_bf16_autocast_is_finite_and_close(rope_type):
    torch.manual_seed(0)
    m = RoPEViT(**TINY, rope_type=rope_type, use_ape=rope_type is None, window_size=4,
                global_block_indexes=(3,)).eval()
    x = torch.randn(1, 3, 160, 208)
    with torch.no_grad():
        ref = m(x)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)[0]
    assert torch.isfinite(low).all()
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05, f"bf16 relative error {rel:.3f}"


def test_interpolate_mode_equals_extrapolate_on_the_pretraining_grid():
    torch.manual_seed(0)
    a = RoPEViT(**TINY, rope_type="mixed").eval()
    b = RoPEViT(**TINY, rope_type="mixed", rope_position="interpolate").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], b(x)[0])
        x = torch.randn(1, 3, 448, 448)
        assert (a(x)[0] - b(x)[0]).abs().max() > 1e-4


def test_frozen_stages_drop_path_and_checkpointing():
    torch.manual_seed(0)
    m = RoPEViT(**TINY, rope_type="mixed", use_ape=True, frozen_stages=2, drop_path_rate=0.2).train()
    assert not m.patch_embed.proj.weight.requires_grad and not m.pos_embed.requires_grad
    assert not any(p.requires_grad for p in m.blocks[1].parameters())
    assert all(p.requires_grad for p in m.blocks[2].parameters())
    assert not m.blocks[0].training and m.blocks[3].training

    torch.manual_seed(0)
    plain = RoPEViT(**TINY, rope_type="mixed", window_size=4, global_block_indexes=(1,)).train()
    cp = RoPEViT(**TINY, rope_type="mixed", window_size=4, global_block_indexes=(1,), with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 96, 80)
    plain(x)[0].square().mean().backward()
    cp(x)[0].square().mean().backward()
    for (n, p), q in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=n)
    assert plain.blocks[2].attn.rope.freqs.grad.abs().sum() > 0


def test_no_weight_decay_names():
    m = RoPEViT(**TINY, rope_type="mixed", use_ape=True)
    names = m.no_weight_decay()
    assert {"pos_embed", "cls_token", "blocks.0.attn.rope.freqs", "blocks.3.attn.rope.freqs"} <= names
    assert set(dict(m.named_parameters())) >= names


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rope_type="spiral"), "unknown RoPE mode"),
        (dict(rope_position="wrap"), "unknown rope_position"),
        (dict(window_size=-1), "window_size must be an int >= 0"),
        (dict(window_size=7, global_block_indexes=(1, 4)), r"global_block_indexes \[4\] out of range"),
        (dict(window_size=7, global_block_indexes=(1,), use_cls_token=True), "cls token cannot pass"),
        (dict(out_indices=(5,)), "out_indices"),
        (dict(embed_dim=60, num_heads=4), "divisible by 4"),
        (dict(frozen_stages=9), "frozen_stages"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RoPEViT(**{**TINY, **kwargs})
