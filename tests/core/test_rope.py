"""Properties of the RoPE engine: norms kept, relative positions only, layouts, dtypes, bad input."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

from ropevit_dense.rope import (
    AxialRoPE,
    GridCoords,
    MixedRoPE,
    apply_rope,
    apply_rope_,
    axial_frequencies,
    grid_axes,
    grid_coords,
    mixed_frequencies,
    rope_table,
)

HEAD_DIM, HEADS = 16, 3


def _freqs(kind: str) -> torch.Tensor:
    if kind == "axial":
        return axial_frequencies(HEAD_DIM, theta=100.0, num_heads=HEADS)
    return mixed_frequencies(HEAD_DIM, HEADS, theta=10.0, generator=torch.Generator().manual_seed(0))


def test_grid_is_x_fastest_and_supports_interpolation():
    c = grid_coords(2, 3)
    assert c.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    ci = grid_coords(4, 8, mode="interpolate", ref_size=(2, 2))
    assert ci[:, 0].max().item() == pytest.approx(7 * 2 / 8) and ci[:, 1].max().item() == pytest.approx(3 * 2 / 4)
    with pytest.raises(ValueError, match="ref_size"):
        grid_coords(2, 2, mode="interpolate")
    with pytest.raises(ValueError, match="unknown RoPE position mode"):
        grid_coords(2, 2, mode="stretch")


@pytest.mark.parametrize("kwargs", [{}, dict(mode="interpolate", ref_size=(5, 3)),
                                    dict(rule="centered", ref_size=(4, 4)),
                                    dict(rule="centered", mode="interpolate")])
def test_grid_axes_flatten_to_grid_coords(kwargs):
    axes = grid_axes(3, 7, **kwargs)
    assert isinstance(axes, GridCoords) and axes.xs.shape == (7,) and axes.ys.shape == (3,)
    torch.testing.assert_close(axes.flat(), grid_coords(3, 7, **kwargs), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_grid_table_is_the_table_of_the_flat_coordinates(kind):
    """The factored table of a grid (one rotation per column times one per row) is the table of its tokens: to
    float64 rounding in float64, to float32 rounding of angles of tens of radians in float32; the learned angles
    and their gradients are the same."""
    axes = grid_axes(9, 11, mode="interpolate", ref_size=(14, 14))
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        freqs = _freqs(kind).to(dtype)
        grid, flat = rope_table(freqs, axes), rope_table(freqs, axes.flat())
        assert grid.rotation is not None and grid.sin.shape == flat.sin.shape == (HEADS, 99, HEAD_DIM // 2)
        torch.testing.assert_close(grid.sin, flat.sin, rtol=0, atol=tol)
        torch.testing.assert_close(grid.cos, flat.cos, rtol=0, atol=tol)
    freqs = _freqs(kind).double().requires_grad_()
    x = torch.randn(2, HEADS, 99, HEAD_DIM, dtype=torch.float64)
    grads = []
    for coords in (axes, axes.flat()):
        table = rope_table(freqs, coords)
        torch.testing.assert_close(table.angles, rope_table(freqs, axes.flat()).angles, rtol=0, atol=1e-12)
        grads.append(torch.autograd.grad(apply_rope(x, table).sin().sum(), freqs)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


def test_axial_frequencies_layout():
    f = axial_frequencies(HEAD_DIM, theta=100.0)
    q = HEAD_DIM // 4
    assert f.shape == (2, 1, HEAD_DIM // 2)
    assert torch.all(f[0, 0, q:] == 0) and torch.all(f[1, 0, :q] == 0)
    assert torch.allclose(f[0, 0, :q], f[1, 0, q:])
    assert f[0, 0, 0] == 1.0 and f[0, 0, 1] == pytest.approx(100.0 ** (-4 / HEAD_DIM))
    # mixed with angle 0 is axial
    assert torch.allclose(mixed_frequencies(HEAD_DIM, 2, theta=100.0, random_angle=False), f.expand(2, 2, -1),
                          atol=1e-7)
    with pytest.raises(ValueError, match="divisible by 4"):
        axial_frequencies(18)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_rotation_keeps_norms(kind):
    coords = grid_coords(5, 9)
    x = torch.randn(2, HEADS, coords.shape[0], HEAD_DIM, dtype=torch.float64)
    out = apply_rope(x, rope_table(_freqs(kind), coords))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=1e-6, atol=1e-6)


def test_rotation_matches_complex_product():
    """Interleaved pairs (2j, 2j+1) are rotated as the complex number x_2j + i x_2j+1 times exp(i angle)."""
    f = _freqs("mixed")
    coords = grid_coords(3, 4)
    x = torch.randn(HEADS, 12, HEAD_DIM, dtype=torch.float64)
    angles = coords[None, :, 0, None] * f[0, :, None] + coords[None, :, 1, None] * f[1, :, None]
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(HEADS, 12, -1, 2).contiguous())
                             * torch.polar(torch.ones_like(angles), angles).to(torch.complex128)).flatten(-2)
    torch.testing.assert_close(apply_rope(x, rope_table(f, coords)), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_scores_depend_only_on_position_difference(kind):
    f = _freqs(kind).double()  # float64 throughout: the identity is exact, the tolerance only covers rounding
    g = torch.Generator().manual_seed(0)
    q = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    k = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)

    def score(pq, pk):
        tq = rope_table(f, torch.tensor([pq], dtype=torch.float64))
        tk = rope_table(f, torch.tensor([pk], dtype=torch.float64))
        return (apply_rope(q, tq) * apply_rope(k, tk)).sum(-1)

    for (dx, dy), (ox, oy) in itertools.product([(1, 0), (0, 2), (-3, 5)], [(0, 0), (7, 3), (40, 61)]):
        torch.testing.assert_close(score((ox + dx, oy + dy), (ox, oy)), score((dx, dy), (0, 0)), rtol=1e-9,
                                   atol=1e-9)


def test_prefix_tokens_are_not_rotated():
    table = rope_table(_freqs("mixed"), grid_coords(2, 2)).with_prefix(1)
    x = torch.randn(HEADS, 5, HEAD_DIM)
    out = apply_rope(x, table)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    assert not torch.allclose(out[:, 2:], x[:, 2:])


def test_bf16_autocast_keeps_angles_in_fp32():
    rope = MixedRoPE(head_dim=HEAD_DIM, num_heads=HEADS)
    coords = grid_coords(64, 64)  # angles up to ~ 60 rad: bf16 would lose them
    with torch.autocast("cpu", dtype=torch.bfloat16):
        table = rope(coords)
    assert table.sin.dtype == torch.float32
    x = torch.randn(1, HEADS, coords.shape[0], HEAD_DIM).to(torch.bfloat16)
    out = apply_rope(x, table)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    ref = apply_rope(x.float(), rope_table(rope.freqs.detach(), coords))
    assert (out.float() - ref).abs().max() < 0.05


def test_axial_module_stays_fp32_and_out_of_state_dict():
    m = AxialRoPE(head_dim=HEAD_DIM).to(torch.bfloat16)
    assert m.freqs.dtype == torch.float32
    assert len(m.state_dict()) == 0
    assert list(MixedRoPE(head_dim=8, num_heads=2).state_dict()) == ["freqs"]


def test_mixed_init_is_random_angle_per_head():
    f = mixed_frequencies(HEAD_DIM, 4, theta=10.0, generator=torch.Generator().manual_seed(1))
    q = HEAD_DIM // 4
    mag = torch.hypot(f[0], f[1])
    torch.testing.assert_close(mag[:, :q], mag[:, q:])
    angle_first = torch.atan2(f[1, :, 0], f[0, :, 0])
    angle_second = torch.atan2(f[1, :, q], f[0, :, q])
    diff = torch.remainder(angle_second - angle_first, 2 * math.pi)
    torch.testing.assert_close(diff, torch.full_like(diff, math.pi / 2), atol=1e-5, rtol=0)
    assert len(set(torch.round(angle_first, decimals=4).tolist())) == 4


def test_training_and_inference_paths_agree_and_gradients_are_right():
    f = _freqs("mixed").double().requires_grad_(True)
    coords = grid_coords(3, 5)
    x = torch.randn(2, HEADS, 15, HEAD_DIM, dtype=torch.float64, requires_grad=True)
    table = rope_table(f, coords)
    with torch.no_grad():
        inference = apply_rope(x, rope_table(f, coords))
    torch.testing.assert_close(apply_rope(x, table), inference)
    torch.autograd.gradcheck(lambda x_, f_: apply_rope(x_, rope_table(f_, coords)), (x, f))


def test_double_backward_through_the_rotation():
    """Second derivatives (gradient penalties, meta-learning: ``grad(..., create_graph=True)`` then ``backward``) run
    and are exact, for learned angles and for fixed tables."""
    coords = grid_coords(3, 4)
    x = torch.randn(2, HEADS, 12, HEAD_DIM, dtype=torch.float64, requires_grad=True)
    f = _freqs("mixed").double().requires_grad_(True)
    fixed = rope_table(_freqs("axial").double(), coords)
    torch.autograd.gradgradcheck(lambda x_, f_: apply_rope(x_, rope_table(f_, coords)), (x, f), fast_mode=True)
    torch.autograd.gradgradcheck(lambda x_: apply_rope(x_, fixed), (x,), fast_mode=True)
    # the pattern of a gradient penalty: a loss on the input gradient, then backward
    out = apply_rope(x, rope_table(f, coords))
    (gx,) = torch.autograd.grad((out ** 3).sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


@pytest.mark.parametrize("rope_type", ["mixed", "spherical", "liere", "comrope-ap", "comrope-ld"])
@pytest.mark.parametrize("cast", ["half", "bfloat16"])
def test_learned_rope_parameters_stay_fp32_through_model_casts(rope_type, cast):
    """``.half()`` / ``.bfloat16()`` of a whole backbone leaves every RoPE parameter in float32 with its exact
    value, so the angles of a large grid are those of the fp32 model (a bf16 frequency is off by ~0.2 rad there)."""
    from ropevit_dense import RoPESwin, RoPEViT
    from ropevit_dense.rope import is_rope_parameter

    torch.manual_seed(0)
    for model in (RoPEViT(embed_dim=64, depth=2, num_heads=2, rope_type=rope_type),
                  RoPESwin(embed_dim=32, depths=(2,), num_heads=(1,), rope_type=rope_type)):
        ref = {k: v.clone() for k, v in model.state_dict().items() if is_rope_parameter(k)}
        assert ref
        getattr(model, cast)()
        for k, v in model.state_dict().items():
            if is_rope_parameter(k):
                assert v.dtype == torch.float32 and torch.equal(v, ref[k]), k
            elif v.is_floating_point():
                assert v.dtype == getattr(torch, "float16" if cast == "half" else "bfloat16"), k
    vit = RoPEViT(embed_dim=64, depth=1, num_heads=2, rope_type="mixed")
    coords = grid_coords(50, 84)
    angles = vit.blocks[0].attn.rope(coords).sin
    vit.bfloat16()
    torch.testing.assert_close(vit.blocks[0].attn.rope(coords).sin, angles, rtol=0, atol=0)


def test_in_place_rotation_equals_the_out_of_place_one():
    """``apply_rope_`` on a strided view of a fused qkv buffer gives the values and the gradients (inputs and learned
    angles, first and second order) of ``apply_rope``; low-precision storage is rounded once."""
    g = torch.Generator().manual_seed(0)
    coords = grid_coords(3, 4)
    f = _freqs("mixed").double().requires_grad_(True)
    w = torch.randn(3 * HEADS * HEAD_DIM, 8, dtype=torch.float64, generator=g, requires_grad=True)
    inp = torch.randn(2, 13, 8, dtype=torch.float64, generator=g)  # 1 prefix token + 12 grid tokens

    def select(t):  # queries and keys of the grid tokens inside the whole buffer
        return t.view(2, 13, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)[:2, :, :, 1:]

    def qkv(mode: str, w_, f_):  # all of q, k, v: the values and the prefix token pass unrotated
        buf = inp @ w_.T
        heads = buf.view(2, 13, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        table = rope_table(f_, coords)
        if mode == "view":  # the view rotated as it is
            apply_rope_(heads[:2, :, :, 1:], table)
            return heads
        if mode == "select":  # the whole buffer, the part selected in it
            return apply_rope_(buf, table, select).view(2, 13, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        return torch.cat((apply_rope(heads[:2], table.with_prefix(1)), heads[2:]))

    for mode in ("view", "select"):
        torch.testing.assert_close(qkv(mode, w, f), qkv("out", w, f))
        torch.autograd.gradcheck(functools.partial(qkv, mode), (w, f), fast_mode=True)
        torch.autograd.gradgradcheck(functools.partial(qkv, mode), (w, f), fast_mode=True)
    torch.autograd.gradgradcheck(lambda w_: qkv("select", w_, f.detach()), (w,), fast_mode=True)  # a fixed table
    with torch.no_grad():  # float32 / bfloat16 storage, no autograd
        x32 = torch.randn(2, HEADS, 12, HEAD_DIM)
        table = rope_table(_freqs("mixed"), coords)
        ref = apply_rope(x32, table)
        torch.testing.assert_close(apply_rope_(x32.clone(), table), ref, rtol=1e-6, atol=1e-6)
        xb = x32.bfloat16()
        torch.testing.assert_close(apply_rope_(xb.clone(), table), apply_rope(xb, table), rtol=0, atol=0)


def test_attention_rotates_pairs_in_place_and_matches_the_out_of_place_path():
    """The attention module rotates queries and keys inside its qkv buffer (the cls token left out by shape); its
    output and gradients equal those of the out-of-place rotation with an identity prefix row."""
    from ropevit_dense.layers import Attention

    torch.manual_seed(0)
    attn = Attention(HEADS * HEAD_DIM, HEADS)
    rope = MixedRoPE(head_dim=HEAD_DIM, num_heads=HEADS)
    coords = grid_coords(3, 4)
    x = torch.randn(2, 13, HEADS * HEAD_DIM, requires_grad=True)
    out = attn(x, rope(coords))
    q, k, v, _ = attn.project(x, rope(coords).with_prefix(1))  # a full-length table: nothing to leave out
    with torch.no_grad():
        qkv = attn.qkv(x).view(2, 13, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        ref_q, ref_k = apply_rope(qkv[:2], rope(coords).with_prefix(1)).unbind(0)
    torch.testing.assert_close(q, ref_q)
    torch.testing.assert_close(k, ref_k)
    ref = attn.proj(torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 13, -1))
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), (x, rope.freqs, attn.qkv.weight))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, rope.freqs, attn.qkv.weight))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="a RoPE table of 20 positions for 13 tokens"):
        attn(x, rope(grid_coords(4, 5)))


def _qkv_grid(inp: torch.Tensor, w: torch.Tensor, hw: tuple[int, int], prefix: int) -> torch.Tensor:
    """Queries and keys of a fused qkv projection in its token-major layout, grid part ``(B, H, W, 2, heads, hd)``."""
    B, N, _ = inp.shape
    return (inp @ w.T).view(B, N, 3, HEADS, HEAD_DIM)[:, prefix:, :2].unflatten(1, hw)


def test_factored_rotation_equals_the_table_rotation():
    """Rotating queries and keys of a grid by the row factor then the column factor (in place, token-major layout)
    gives the rotation by the full table, in fp64 and fp32; several layers' factors computed together are each
    layer's own."""
    from ropevit_dense.rope import factored_tables, rotate_factored_

    g = torch.Generator().manual_seed(1)
    coords = grid_axes(3, 5)
    fs = [mixed_frequencies(HEAD_DIM, HEADS, theta=10.0, generator=g) for _ in range(3)]
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        x = torch.randn(2, 3, 5, 2, HEADS, HEAD_DIM, dtype=dtype, generator=g)
        tables = factored_tables([f.to(dtype) for f in fs], coords)
        for f, table in zip(fs, tables):
            ref = apply_rope(x.flatten(1, 2).permute(2, 0, 3, 1, 4), rope_table(f.to(dtype), coords))  # (2,B,h,N,hd)
            out = rotate_factored_(x.clone(), table).flatten(1, 2).permute(2, 0, 3, 1, 4)
            torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
            full = table.table()  # the same rotations as a plain table
            torch.testing.assert_close(full.sin, rope_table(f.to(dtype), coords).sin, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="does not fit"):
        rotate_factored_(torch.randn(2, 5, 3, 2, HEADS, HEAD_DIM), factored_tables(fs[:1], coords)[0])
    with pytest.raises(ValueError, match="adjacent channel pairs"):
        rotate_factored_(torch.randn(2, 3, 5, 2, HEADS, HEAD_DIM).bfloat16(), factored_tables(fs[:1], coords)[0])


def test_factored_rotation_gradients_first_and_second_order():
    """The factored rotation's hand-written backward (inputs and learned frequencies) against finite differences,
    and its double backward, on a strided view of a fused qkv buffer with a cls token left out."""
    from ropevit_dense.rope import factored_tables, rotate_factored_

    g = torch.Generator().manual_seed(2)
    coords = grid_axes(3, 4)
    f = _freqs("mixed").double().requires_grad_(True)
    f2 = _freqs("mixed").double().mul(0.7).requires_grad_(True)
    w = torch.randn(3 * HEADS * HEAD_DIM, 8, dtype=torch.float64, generator=g, requires_grad=True)
    inp = torch.randn(2, 13, 8, dtype=torch.float64, generator=g)

    def select(t):  # the grid's queries and keys inside a whole qkv buffer (B, N, 3 * heads * head_dim)
        return t.view(*t.shape[:2], 3, HEADS, HEAD_DIM)[:, 1:, :2].unflatten(1, (3, 4))

    def rotated(w_, f_, f2_):  # two layers' tables computed together, one applied per layer
        t1, t2 = factored_tables([f_, f2_], coords)
        q1 = rotate_factored_(_qkv_grid(inp, w_, (3, 4), prefix=1), t1)  # a view rotated as it is
        buf = rotate_factored_(inp @ w_.T, t2, select)  # the whole buffer, the grid selected in it
        return q1 * select(buf), buf.square()

    flat = _qkv_grid(inp, w, (3, 4), 1).flatten(1, 2).permute(2, 0, 3, 1, 4)
    ref = apply_rope(flat, rope_table(f, coords)) * apply_rope(flat, rope_table(f2, coords))
    prod, buf = rotated(w, f, f2)
    torch.testing.assert_close(prod.flatten(1, 2).permute(2, 0, 3, 1, 4), ref)
    plain = (inp @ w.T).view(2, 13, 3, HEADS, HEAD_DIM)
    torch.testing.assert_close(buf.view_as(plain)[:, 0], plain[:, 0].square())  # cls token unrotated
    torch.testing.assert_close(buf.view_as(plain)[:, :, 2], plain[:, :, 2].square())  # values unrotated
    torch.autograd.gradcheck(rotated, (w, f, f2), fast_mode=True)
    torch.autograd.gradgradcheck(rotated, (w, f, f2), fast_mode=True)
    fixed = factored_tables([_freqs("axial").double()], coords)[0]
    torch.autograd.gradgradcheck(lambda w_: rotate_factored_(_qkv_grid(inp, w_, (3, 4), 1), fixed), (w,),
                                 fast_mode=True)
    torch.autograd.gradgradcheck(lambda w_: rotate_factored_(inp @ w_.T, fixed, select), (w,), fast_mode=True)


@pytest.mark.parametrize("window", [0, 2])
def test_backbone_factored_path_matches_plain_tables(monkeypatch, window):
    """A RoPE-Mixed ViT (cls token; all-global, or windowed blocks with padding) gives the same features and
    gradients with its factored tables as with every block's plain table, and the same features in inference
    (tables built one block at a time) as in training mode (all blocks' tables at once)."""
    import ropevit_dense.backbones.vit as vit_module
    from ropevit_dense import RoPEViT

    torch.manual_seed(0)
    kwargs = dict(embed_dim=2 * HEAD_DIM, depth=3, num_heads=2, patch_size=4, pretrain_img_size=24, rope_type="mixed",
                  out_indices=(1, 2))
    if window:
        kwargs.update(use_cls_token=False, window_size=window, global_block_indexes=(1,))
    model = RoPEViT(**kwargs)
    x = torch.randn(2, 3, 20, 28)

    def run():
        model.zero_grad()
        feats = model(x)
        sum(f.square().sum() for f in feats).backward()
        return [f.detach() for f in feats], [p.grad.clone() for p in model.parameters() if p.grad is not None]

    feats, grads = run()
    calls = []
    factored = vit_module.factored_tables
    monkeypatch.setattr(vit_module, "factored_tables", lambda fs, c: calls.append(len(fs)) or factored(fs, c))
    with torch.no_grad():
        for a, b in zip(model(x), feats):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert calls == [1] * 3  # one block's table at a time
    calls.clear()
    run()
    assert sorted(calls) == ([1, 2] if window else [3])  # every block of a layout at once
    monkeypatch.setattr(vit_module, "factored_tables", lambda fs, c: [t.table() for t in factored(fs, c)])
    ref_feats, ref_grads = run()
    for a, b in zip(feats + grads, ref_feats + ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
