"""Spherical RoPE, LieRE, ComRoPE-AP / -LD: orthogonality, relativity (or its absence), degenerate cases against
RoPE's sin / cos path, matrix exponentials against a float64 eigendecomposition oracle, gradients, both backbones,
parameter rules and checkpoint loading."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ropevit_dense.backbones import RoPESwin, RoPEViT
from ropevit_dense.backbones.lr_decay import swin_layer_id, vit_layer_id
from ropevit_dense.checkpoints import CheckpointError
from ropevit_dense.checkpoints.load import load_pretrained
from ropevit_dense.layers import Attention
from ropevit_dense.rope import (
    SHARED_ROPE_TYPES,
    BlockRopeTable,
    ComRoPEAP,
    ComRoPELD,
    LieRE,
    MixedRoPE,
    RopeTable,
    SphericalRoPE,
    apply_rope,
    generator_table,
    grid_coords,
    is_rope_parameter,
    rope_table,
    spherical_blocks,
)

HEAD_DIM, HEADS = 16, 2
MODES = ("spherical", "liere", "comrope-ap", "comrope-ld")
BACKBONE_MODES = (*MODES, "liere-per-layer")  # 'liere': one generator set for all blocks and heads (the backbone's)
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: intra-op threads only add scheduling overhead (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _module(mode: str, *, block_size: int = 4, head_dim: int = HEAD_DIM, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if mode == "spherical":
        return SphericalRoPE(head_dim=head_dim, num_heads=HEADS)
    cls = {"liere": LieRE, "comrope-ap": ComRoPEAP, "comrope-ld": ComRoPELD}[mode]
    return cls(head_dim=head_dim, num_heads=HEADS, block_size=block_size, coord_scale=1 / 7)


def _expm_oracle(a: torch.Tensor) -> torch.Tensor:
    """``expm`` of real skew-symmetric matrices through the eigendecomposition of the Hermitian ``i A`` (float64):
    ``i A = V diag(mu) V^H`` gives ``expm(A) = V diag(exp(-i mu)) V^H``. Independent of ``torch.linalg.matrix_exp``."""
    mu, v = torch.linalg.eigh(1j * a.to(torch.complex128))
    return ((v * torch.exp(-1j * mu).unsqueeze(-2)) @ v.conj().transpose(-1, -2)).real


def _dense(blocks: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(heads, N, nb, b, b)`` blocks as dense ``(heads, N, head_dim, head_dim)`` matrices (identity on the rest)."""
    nb, b = blocks.shape[2], blocks.shape[-1]
    dense = torch.eye(head_dim, dtype=blocks.dtype).repeat(*blocks.shape[:2], 1, 1)
    for j in range(nb):
        dense[..., b * j:b * j + b, b * j:b * j + b] = blocks[:, :, j]
    return dense


def _effective_blocks(table) -> torch.Tensor:
    """The per-token rotation blocks ``(heads, N, nb, b, b)`` a table applies: its blocks, or for a table with a
    shared basis (ComRoPE) ``Q R(angles) Q^T`` assembled here from the basis and the sin / cos of each pair."""
    if isinstance(table, BlockRopeTable):
        return table.blocks
    basis = table.basis  # (heads, nb, b, b) = Q^T
    if basis is None:  # plain pairs
        basis = torch.eye(2, dtype=table.sin.dtype).expand(table.sin.shape[0], table.sin.shape[-1], 2, 2)
    nb, b = basis.shape[1], basis.shape[-1]
    sin = table.sin.unflatten(-1, (nb, b // 2))
    cos = table.cos.unflatten(-1, (nb, b // 2))
    r = sin.new_zeros(*sin.shape[:-1], b, b)
    for k in range(b // 2):
        r[..., 2 * k, 2 * k], r[..., 2 * k, 2 * k + 1] = cos[..., k], -sin[..., k]
        r[..., 2 * k + 1, 2 * k], r[..., 2 * k + 1, 2 * k + 1] = sin[..., k], cos[..., k]
    return basis.transpose(-1, -2)[:, None] @ r @ basis[:, None]


def _arg(module: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    """``x A_x + y A_y`` in float64 per (head, token, block), in the module's token units."""
    g = (module.skew_generators() * module.coord_scale).detach().double()
    c = coords.double()
    return c[None, :, 0, None, None, None] * g[0][:, None] + c[None, :, 1, None, None, None] * g[1][:, None]


# -- the block path of apply_rope ------------------------------------------------------------------------------------
def test_block_rotation_is_the_dense_block_diagonal_product():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(HEADS, 6, 2, 3, 3, dtype=torch.float64, generator=g)
    blocks = _expm_oracle(a - a.transpose(-1, -2))
    x = torch.randn(2, 3, HEADS, 6, 8, dtype=torch.float64, generator=g)  # 2 blocks of 3 + 2 unrotated channels
    ref = (_dense(blocks, 8) @ x.unsqueeze(-1)).squeeze(-1)
    out = apply_rope(x, BlockRopeTable(blocks))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[..., 6:], x[..., 6:], rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not fit head_dim"):
        apply_rope(x[..., :5], BlockRopeTable(blocks))
    with pytest.raises(ValueError, match="2x2 rotations go through RopeTable"):
        apply_rope(x, BlockRopeTable(torch.eye(2, dtype=torch.float64).expand(HEADS, 6, 4, 2, 2)))


# -- orthogonality and precision -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_rotations_are_orthogonal_and_keep_norms_in_fp32(mode):
    coords = grid_coords(5, 9)
    table = _module(mode)(coords)
    if mode.startswith("comrope"):  # a shared basis and the sin / cos path
        assert isinstance(table, RopeTable) and table.basis.dtype == table.sin.dtype == torch.float32
    else:
        assert isinstance(table, BlockRopeTable) and table.blocks.dtype == torch.float32
    r = _effective_blocks(table).detach()
    eye = torch.eye(r.shape[-1]).expand_as(r)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye, rtol=0, atol=1e-5)  # ~ float32 eps * ||arg||
    x = torch.randn(2, HEADS, coords.shape[0], HEAD_DIM)
    with torch.no_grad():
        out = apply_rope(x, table)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_bf16_autocast_keeps_tables_in_fp32_and_outputs_finite(mode):
    module = _module(mode)
    coords = grid_coords(24, 24)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            table = module(coords)
            x = torch.randn(1, HEADS, coords.shape[0], HEAD_DIM).to(torch.bfloat16)
            out = apply_rope(x, table)
        ref = apply_rope(x.float(), module(coords))
    # float32 tables (the eager complex rotation of a pair table is complex64: float32 parts)
    assert all(t.dtype in (torch.float32, torch.complex64)
               for t in (table if isinstance(table, RopeTable) else table.blocks[None]) if t is not None)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().max() < 0.05


@pytest.mark.parametrize("mode", ["liere", "comrope-ap", "comrope-ld"])
def test_matrix_exp_stays_accurate_at_large_positions(mode):
    """Far beyond the training grid (positions up to 1000 tokens, generator norms in the thousands) the float32
    blocks stay within a few float32 ulps of ``||x A_x + y A_y||`` of the float64 oracle: the limit set by
    forming the argument in float32 at all."""
    module = _module(mode, block_size=8, head_dim=32)
    coords = torch.tensor([[0.0, 0.0], [13.0, 13.0], [120.0, 75.0], [400.0, 250.0], [1000.0, 700.0]])
    with torch.no_grad():
        blocks = _effective_blocks(module(coords)).double()
    arg = _arg(module, coords)
    norm = torch.linalg.matrix_norm(arg, ord=2)
    assert norm.max() > 500  # the test does reach large norms
    err = (blocks - _expm_oracle(arg)).abs().amax(dim=(-1, -2))
    bound = 8 * EPS32 * (1 + norm)
    assert (err <= bound).all(), f"worst error / bound {(err / bound).max():.2f}"
    orth = (blocks.transpose(-1, -2) @ blocks - torch.eye(8, dtype=torch.float64)).abs().amax(dim=(-1, -2))
    assert (orth <= 2 * bound).all()  # R^T R - I carries the error of R twice


@pytest.mark.parametrize("block_size", [4, 8])
@pytest.mark.parametrize("mode", ["comrope-ap", "comrope-ld"])
def test_comrope_basis_form_equals_the_joint_exponential(mode, block_size):
    """``Q R(x a + y c) Q^T`` from the common eigenbasis is ``expm(x A_x + y A_y)`` (float64: 1e-11), attention
    scores through the basis path equal those of the matrix exponentials (float64: 1e-5, float32: 1e-4
    relative to the score scale), and the gradients reaching the learned matrices are the same."""
    module = _module(mode, block_size=block_size, head_dim=16).double()
    coords = grid_coords(6, 7).double() * 3.0
    gen = module.skew_generators().detach() * module.coord_scale
    joint = generator_table(gen, coords)
    with torch.no_grad():
        torch.testing.assert_close(_effective_blocks(module(coords)), joint.blocks, rtol=1e-11, atol=1e-11)
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, HEADS, 42, 16, dtype=torch.float64, generator=g)
    k = torch.randn(2, HEADS, 42, 16, dtype=torch.float64, generator=g)
    for dtype, tol in ((torch.float64, 1e-5), (torch.float32, 1e-4)):
        m = module.to(dtype)
        c = coords.to(dtype)
        with torch.no_grad():
            fast = apply_rope(q.to(dtype), m(c)) @ apply_rope(k.to(dtype), m(c)).transpose(-1, -2)
            ref_table = generator_table(m.skew_generators() * m.coord_scale, c)
            ref = apply_rope(q.to(dtype), ref_table) @ apply_rope(k.to(dtype), ref_table).transpose(-1, -2)
        assert (fast - ref).abs().max() <= tol * ref.abs().max(), dtype
    module.double()
    params = list(module.parameters())

    def loss(table):
        s = apply_rope(q, table) @ apply_rope(k, table).transpose(-1, -2)
        return (s.softmax(-1) * torch.linspace(0, 1, 42, dtype=torch.float64)).sum()

    fast = torch.autograd.grad(loss(module(coords)), params)
    ref = torch.autograd.grad(loss(generator_table(module.skew_generators() * module.coord_scale, coords)), params)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


# -- commutativity and relative positions ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["comrope-ap", "comrope-ld"])
def test_comrope_generators_are_skew_symmetric_and_commute(mode):
    a = _module(mode).double().skew_generators().detach()
    torch.testing.assert_close(a, -a.transpose(-1, -2), rtol=0, atol=0)
    torch.testing.assert_close(a[0] @ a[1], a[1] @ a[0], rtol=0, atol=1e-12)
    assert a[0].abs().sum() > 0 and a[1].abs().sum() > 0


def test_liere_generators_do_not_commute_in_general():
    a = _module("liere").skew_generators().detach().double()
    assert (a[0] @ a[1] - a[1] @ a[0]).abs().max() > 1.0


def _score(module: nn.Module, q: torch.Tensor, k: torch.Tensor, pq: tuple, pk: tuple) -> torch.Tensor:
    tq = module(torch.tensor([pq], dtype=torch.float64))
    tk = module(torch.tensor([pk], dtype=torch.float64))
    return (apply_rope(q, tq) * apply_rope(k, tk)).sum(-1)


def _commuting_liere() -> nn.Module:
    module = _module("liere").double()
    with torch.no_grad():
        module.generators[1] = -0.37 * module.generators[0]  # A_y a multiple of A_x: the two commute
    return module


@pytest.mark.parametrize("mode", ["comrope-ap", "comrope-ld", "liere-commuting"])
def test_scores_depend_only_on_position_difference(mode):
    module = (_commuting_liere() if mode == "liere-commuting" else _module(mode)).double()
    g = torch.Generator().manual_seed(1)
    q = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    k = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    with torch.no_grad():
        for (dx, dy), (ox, oy) in itertools.product([(1, 0), (0, 2), (-3, 5)], [(0, 0), (7, 3), (40, 61)]):
            torch.testing.assert_close(_score(module, q, k, (ox + dx, oy + dy), (ox, oy)),
                                       _score(module, q, k, (dx, dy), (0, 0)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", ["liere", "spherical"])
def test_non_commuting_modes_are_not_relative(mode):
    """LieRE (generic generators) and Spherical RoPE: the same offset gives different scores at different places."""
    module = _module(mode).double()
    g = torch.Generator().manual_seed(2)
    q = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    k = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    with torch.no_grad():
        here = _score(module, q, k, (1, 3), (0, 2))
        there = _score(module, q, k, (9, 5), (8, 4))
    assert (here - there).abs().max() > 1e-3


def test_spherical_rows_are_relative_columns_are_not():
    """``R(x1, y)^T R(x2, y) = R01(a2 - a1)``: tokens of one row see only their x offset; a vertical offset is
    turned by the x rotation of the token, so it depends on where the pair sits."""
    module = _module("spherical").double()
    g = torch.Generator().manual_seed(3)
    q = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    k = torch.randn(HEADS, 1, HEAD_DIM, dtype=torch.float64, generator=g)
    with torch.no_grad():
        for ox, oy in [(0, 0), (5, 9), (31, 2)]:
            torch.testing.assert_close(_score(module, q, k, (ox + 3, oy), (ox, oy)),
                                       _score(module, q, k, (3, 0), (0, 0)), rtol=1e-9, atol=1e-9)
        vertical = [_score(module, q, k, (ox, 2), (ox, 0)) for ox in (0, 1, 5)]
    assert (vertical[0] - vertical[1]).abs().max() > 1e-3 and (vertical[0] - vertical[2]).abs().max() > 1e-3


# -- degenerate settings: exactly RoPE ------------------------------------------------------------------------------
def test_liere_with_2x2_blocks_is_rope_mixed_through_the_sin_cos_path():
    module = _module("liere", block_size=2).double()
    coords = grid_coords(4, 5).double()
    table = module(coords)
    assert isinstance(table, RopeTable) and table.angles is not None  # the 2x2 fast path, learnable angles
    rate = module.skew_generators().detach()[..., 1, 0] * module.coord_scale  # (2, heads, head_dim / 2)
    mixed = MixedRoPE(head_dim=HEAD_DIM, num_heads=HEADS).double()
    with torch.no_grad():
        mixed.freqs.copy_(rate)
    x = torch.randn(2, HEADS, 20, HEAD_DIM, dtype=torch.float64)
    with torch.no_grad():
        out = apply_rope(x, table)
        torch.testing.assert_close(out, apply_rope(x, mixed(coords)), rtol=1e-12, atol=1e-12)
        # and both are the matrix exponential of the 2x2 generators (oracle, applied as dense matrices)
        oracle = _expm_oracle(_arg(module, coords))
    torch.testing.assert_close(out, (_dense(oracle, HEAD_DIM) @ x.unsqueeze(-1)).squeeze(-1), rtol=1e-10,
                               atol=1e-10)


def _pairs_only(upper: torch.Tensor, size: int) -> torch.Tensor:
    """Keep only the (2i, 2i+1) entries of strictly upper triangles: blocks made of independent 2x2 rotations."""
    rows, cols = torch.triu_indices(size, size, offset=1)
    keep = (cols == rows + 1) & (rows % 2 == 0)
    return upper * keep


@pytest.mark.parametrize("block_size", [4, 8])
def test_liere_with_pairwise_generators_equals_rope_mixed(block_size):
    """LieRE whose generator blocks only couple channel pairs (2i, 2i+1) is RoPE-Mixed with those entries as
    frequencies: matrix_exp + block product against apply_rope's sin / cos path."""
    module = _module("liere", block_size=block_size).double()
    with torch.no_grad():
        module.generators.copy_(_pairs_only(module.generators, block_size))
    coords = grid_coords(6, 5).double()
    a = module.skew_generators().detach() * module.coord_scale  # (2, heads, nb, b, b)
    freqs = torch.stack([a[..., 2 * i + 1, 2 * i] for i in range(block_size // 2)], dim=-1).flatten(-2)
    x = torch.randn(2, 3, HEADS, 30, HEAD_DIM, dtype=torch.float64)
    with torch.no_grad():
        got = apply_rope(x, module(coords))
    torch.testing.assert_close(got, apply_rope(x, rope_table(freqs, coords)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("block_size", [2, 4])
def test_comrope_ap_with_pairwise_blocks_is_axial_style_rope(block_size):
    """ComRoPE-AP: block j follows x (j even) or y (j odd); with pairwise blocks it is RoPE whose pairs carry an
    x frequency or a y frequency, never both (the RoPE special case the paper generalises)."""
    module = _module("comrope-ap", block_size=block_size).double()
    if block_size > 2:
        with torch.no_grad():
            p = module.generators
            mask = torch.zeros(block_size, block_size, dtype=torch.float64)
            for i in range(0, block_size, 2):
                mask[i + 1, i] = 1.0
            p.mul_(mask)  # P - P^T then only couples (2i, 2i+1)
    a = module.skew_generators().detach() * module.coord_scale
    rate = torch.stack([a[..., 2 * i + 1, 2 * i] for i in range(block_size // 2)], dim=-1)  # (2, heads, nb, b/2)
    nb = HEAD_DIM // block_size
    assert torch.all(rate[0, :, 1::2] == 0) and torch.all(rate[1, :, 0::2] == 0)
    assert torch.all(rate[0, :, 0::2] != 0) and torch.all(rate[1, :, 1::2] != 0)
    freqs = rate.flatten(-2)
    assert freqs.shape == (2, HEADS, nb * block_size // 2)
    coords = grid_coords(5, 6).double()
    x = torch.randn(2, HEADS, 30, HEAD_DIM, dtype=torch.float64)
    with torch.no_grad():
        got = (_dense(_effective_blocks(module(coords)), HEAD_DIM) @ x.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, apply_rope(x, rope_table(freqs, coords)), rtol=1e-10, atol=1e-10)


def test_comrope_ld_with_2x2_blocks_is_rope_mixed():
    module = _module("comrope-ld", block_size=2).double()
    s = (module.generators - module.generators.transpose(-1, -2)).detach()[..., 1, 0]  # (heads, nb)
    freqs = module.axis_scales.detach()[:, None, :] * s * module.coord_scale  # (2, heads, nb)
    coords = grid_coords(4, 7).double()
    x = torch.randn(HEADS, 28, HEAD_DIM, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(apply_rope(x, module(coords)), apply_rope(x, rope_table(freqs, coords)),
                                   rtol=1e-12, atol=1e-12)


def test_spherical_without_y_frequencies_is_rope_on_the_first_two_channels_of_each_block():
    module = _module("spherical").double()
    with torch.no_grad():
        module.freqs[1] = 0.0
    coords = grid_coords(3, 8).double()
    x = torch.randn(HEADS, 24, HEAD_DIM, dtype=torch.float64)
    nb = HEAD_DIM // 3
    with torch.no_grad():
        out = apply_rope(x, module(coords))
    pairs = torch.tensor([c for j in range(nb) for c in (3 * j, 3 * j + 1)])
    rest = torch.tensor([3 * j + 2 for j in range(nb)] + list(range(3 * nb, HEAD_DIM)))
    freqs = torch.stack((module.freqs[0].detach(), torch.zeros(HEADS, nb, dtype=torch.float64)))
    torch.testing.assert_close(out[..., pairs], apply_rope(x[..., pairs], rope_table(freqs, coords)), rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(out[..., rest], x[..., rest], rtol=0, atol=0)


def test_spherical_blocks_are_the_composition_of_two_exponentials():
    """Closed form ``R12(y fy) R01(x fx)`` against ``expm(y fy L12) @ expm(x fx L01)`` (oracle) and a check that
    the two so(3) generators do not commute."""
    freqs = torch.randn(2, HEADS, 4, dtype=torch.float64)
    coords = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 5.0], [-3.0, 7.5]], dtype=torch.float64)
    l01 = torch.zeros(3, 3, dtype=torch.float64)
    l01[1, 0], l01[0, 1] = 1.0, -1.0
    l12 = torch.zeros(3, 3, dtype=torch.float64)
    l12[2, 1], l12[1, 2] = 1.0, -1.0
    assert (l01 @ l12 - l12 @ l01).abs().max() > 0.5
    a = coords[None, :, 0, None, None, None] * freqs[0, :, None, :, None, None] * l01
    b = coords[None, :, 1, None, None, None] * freqs[1, :, None, :, None, None] * l12
    torch.testing.assert_close(spherical_blocks(freqs, coords), _expm_oracle(b) @ _expm_oracle(a), rtol=1e-12,
                               atol=1e-12)


# -- gradients, prefix rows, no stale state --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [*MODES, "comrope-ap-basis", "comrope-ld-basis"])
def test_gradients_reach_the_position_parameters(mode):
    if mode.endswith("-basis"):  # 4x4 blocks: ComRoPE's eigenbasis path
        module = _module(mode[: -len("-basis")], head_dim=8, block_size=4).double()
    else:
        module = _module(mode, head_dim=6, block_size=3).double()  # 3x3 blocks: the matrix_exp path
    coords = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]], dtype=torch.float64)  # both axes move
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
    x = torch.randn(HEADS, 3, module.head_dim, dtype=torch.float64, requires_grad=True)

    def f(x_, *ps):
        table = torch.func.functional_call(module, dict(zip(names, ps)), (coords,))
        return apply_rope(x_, table)

    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True)


def test_two_by_two_generator_gradients_use_the_sin_cos_backward():
    module = _module("comrope-ld", block_size=2).double()
    coords = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]], dtype=torch.float64)
    x = torch.randn(HEADS, 3, HEAD_DIM, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
    assert isinstance(module(coords), RopeTable)
    assert torch.autograd.gradcheck(
        lambda x_, *ps: apply_rope(x_, torch.func.functional_call(module, dict(zip(names, ps)), (coords,))),
        (x, *params))


@pytest.mark.parametrize("mode", MODES)
def test_prefix_tokens_stay_and_tables_follow_parameter_changes(mode):
    module = _module(mode)
    coords = grid_coords(3, 3)
    x = torch.randn(HEADS, 10, HEAD_DIM)
    with torch.no_grad():
        table = module(coords).with_prefix(1)
        rot = _effective_blocks(table)
        torch.testing.assert_close(rot[:, 0], torch.eye(rot.shape[-1]).expand_as(rot[:, 0]), rtol=0, atol=1e-6)
        if isinstance(table, BlockRopeTable):
            out = apply_rope(x, table)
            torch.testing.assert_close(out[:, 0], x[:, 0], rtol=0, atol=0)
            assert (out[:, 2:] - x[:, 2:]).abs().max() > 1e-3
        before = _effective_blocks(module(coords)).clone()
        for p in module.parameters():
            p.mul_(1.5)
        after = _effective_blocks(module(coords))
    assert (after - before).abs().max() > 1e-3  # nothing cached: the table follows the parameters


def test_window_local_coordinates_equal_global_ones_only_for_relative_modes():
    """What window blocks rely on: one window at a global offset attends alike with local coordinates for
    ComRoPE; Spherical RoPE and LieRE see each window in the same local frame instead."""
    torch.manual_seed(0)
    attn = Attention(HEADS * HEAD_DIM, HEADS).eval()
    local = grid_coords(4, 4)
    shifted = local + torch.tensor([8.0, 12.0])
    x = torch.randn(3, 16, HEADS * HEAD_DIM)
    for mode in MODES:
        module = _module(mode)
        with torch.no_grad():
            diff = (attn(x, module(local)) - attn(x, module(shifted))).abs().max()
        if mode.startswith("comrope"):
            assert diff < 1e-5, mode
        else:
            assert diff > 1e-4, mode


# -- backbones -------------------------------------------------------------------------------------------------------
TINY_VIT = dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, pretrain_img_size=64, init_values=1.0)


def _train(model: nn.Module, images: torch.Tensor, steps: int = 6) -> list[float]:
    torch.manual_seed(1)
    with torch.no_grad():
        targets = [torch.randn_like(o) for o in model(images)]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = sum(((o - t) ** 2).mean() for o, t in zip(model(images), targets))
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    return losses


@pytest.mark.parametrize("layout", ["global", "windowed"])
@pytest.mark.parametrize("mode", BACKBONE_MODES)
def test_tiny_vit_trains_and_runs_larger(mode, layout):
    kw = dict(window_size=4, global_block_indexes=(1,)) if layout == "windowed" else {}
    torch.manual_seed(0)
    model = RoPEViT(**TINY_VIT, rope_type=mode, **kw).train()
    rope_params = {n: p for n, p in model.named_parameters() if is_rope_parameter(n)}
    owners = ("rope.",) if mode in SHARED_ROPE_TYPES else ("blocks.0.attn.rope.", "blocks.1.attn.rope.")
    assert rope_params and all(n.startswith(owners) for n in rope_params)
    start = {n: p.detach().clone() for n, p in rope_params.items()}
    losses = _train(model, torch.randn(2, 3, 64, 64))
    assert losses[-1] < losses[0], losses
    assert all((p.detach() - start[n]).abs().max() > 0 for n, p in rope_params.items())  # generators learn
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 96, 112))[0]
    assert out.shape == (1, 32, 12, 14) and torch.isfinite(out).all()


@pytest.mark.parametrize("mode", BACKBONE_MODES)
def test_tiny_swin_trains_and_runs_larger(mode):
    torch.manual_seed(0)
    model = RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4, pretrain_window_size=4,
                     rope_type=mode).train()
    rope_params = {n: p for n, p in model.named_parameters() if is_rope_parameter(n)}
    owners = {n.rsplit("rope.", 1)[0] for n in rope_params}
    # one RoPE module per attention layer, or the backbone's one
    assert owners == ({""} if mode in SHARED_ROPE_TYPES else {f"layers.{i}.blocks.{j}.attn." for i in range(2)
                                                              for j in range(2)})
    losses = _train(model, torch.randn(2, 3, 48, 48))
    assert losses[-1] < losses[0], losses
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 96, 80))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 24, 20), (1, 64, 12, 10)]
    assert all(torch.isfinite(o).all() for o in outs)


def _per_layer_twin(shared: nn.Module, cls, **kw) -> nn.Module:
    """A 'liere-per-layer' backbone with ``shared``'s weights and its one generator set in every layer and head."""
    twin = cls(**kw, rope_type="liere-per-layer")
    missing, unexpected = twin.load_state_dict(shared.state_dict(), strict=False)
    assert unexpected == ["rope.generators"] and all(k.endswith("attn.rope.generators") for k in missing)
    for m in twin.modules():
        if isinstance(m, LieRE):
            nb = m.generators.shape[2]  # narrower heads use the leading blocks of the widest head's generators
            m.generators.data.copy_(shared.rope.generators.data[:, :, :nb].expand_as(m.generators))
    return twin


@pytest.mark.parametrize("arch", ["vit", "swin"])
def test_shared_liere_is_per_layer_liere_with_one_generator_set(arch):
    """'liere' (the reference's default: one set of generators for every layer and head, computed once per forward)
    gives exactly the outputs and generator gradients of per-layer LieRE whose layers all hold that one set."""
    torch.manual_seed(0)
    if arch == "vit":
        cls, kw, x = RoPEViT, dict(TINY_VIT, window_size=4, global_block_indexes=(1,)), torch.randn(2, 3, 80, 96)
    else:
        cls, kw = RoPESwin, dict(embed_dim=32, depths=(2, 2), num_heads=(1, 4), window_size=4, pretrain_window_size=4)
        x = torch.randn(2, 3, 72, 56)  # head widths 32 and 16: the 16-wide heads use the first 2 of 4 blocks
    shared = cls(**kw, rope_type="liere").train()
    twin = _per_layer_twin(shared, cls, **kw).train()
    calls = []
    shared.rope.register_forward_hook(lambda *args: calls.append(1))
    out, ref = shared(x), twin(x)
    assert len(calls) == (2 if arch == "vit" else 1)  # one table per layout (window, global) and forward
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    sum(o.square().mean() for o in out).backward()
    sum(o.square().mean() for o in ref).backward()
    grads = [m.generators.grad for m in twin.modules() if isinstance(m, LieRE)]
    nb = shared.rope.generators.shape[2]
    total = sum(torch.nn.functional.pad(g.sum(1, keepdim=True), (0, 0, 0, nb - g.shape[2])) for g in grads)
    torch.testing.assert_close(shared.rope.generators.grad, total, rtol=1e-4, atol=1e-8)
    assert shared.rope.generators.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["spherical", "comrope-ld"])
def test_activation_checkpointing_gives_the_same_gradients(mode):
    torch.manual_seed(0)
    plain = RoPEViT(**TINY_VIT, rope_type=mode, window_size=4, global_block_indexes=(1,)).train()
    cp = RoPEViT(**TINY_VIT, rope_type=mode, window_size=4, global_block_indexes=(1,), with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 48, 40)
    plain(x)[0].square().mean().backward()
    cp(x)[0].square().mean().backward()
    for (n, p), q in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=n)
    rope_param = "freqs" if mode == "spherical" else "axis_scales"
    assert getattr(plain.blocks[0].attn.rope, rope_param).grad.abs().sum() > 0


def test_bf16_autocast_backbones_are_finite_and_close():
    x = torch.randn(1, 3, 80, 96)
    for mode in MODES:
        torch.manual_seed(0)
        model = RoPEViT(**TINY_VIT, rope_type=mode, window_size=4, global_block_indexes=(1,)).eval()
        with torch.no_grad():
            ref = model(x)[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x)[0]
        assert torch.isfinite(low).all()
        assert (low.float() - ref).norm() / ref.norm() < 0.05, mode


# -- parameter rules -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", BACKBONE_MODES)
def test_weight_decay_and_layer_decay_rules_cover_the_new_parameters(mode):
    vit = RoPEViT(**TINY_VIT, rope_type=mode)
    rope = {n for n, _ in vit.named_parameters() if ".rope." in f".{n}"}
    assert rope and rope <= vit.no_weight_decay()
    # a block's own RoPE decays with its block; the backbone's shared one with the embeddings
    shared = mode in SHARED_ROPE_TYPES
    assert {vit_layer_id(f"backbone.{n}", vit.depth) for n in rope} == ({0} if shared else {1, 2})
    swin = RoPESwin(embed_dim=32, depths=(2,), num_heads=(2,), window_size=4, rope_type=mode)
    keys = swin.no_weight_decay_keywords()
    swin_rope = [n for n, _ in swin.named_parameters() if ".rope." in f".{n}"]
    assert swin_rope and all(any(k in n for k in keys) for n in swin_rope)
    assert {swin_layer_id(f"backbone.{n}", (2,)) for n in swin_rope} == ({0} if shared else {1, 2})
    assert not any(any(k in n for k in keys) for n, _ in swin.named_parameters() if n not in swin_rope)


def test_optimizer_rope_key_covers_generators():
    pytest.importorskip("mmengine")
    from ropevit_dense.adapters.openmmlab import RoPEOptimWrapperConstructor

    model = nn.Module()
    model.backbone = RoPEViT(**TINY_VIT, rope_type="comrope-ld")
    constructor = RoPEOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4)),
        dict(custom_keys={"backbone": dict(lr_mult=0.1), "rope.freqs": dict(lr_mult=0.1, decay_mult=0.0)}))
    groups = constructor(model).optimizer.param_groups
    by_param = {id(g["params"][0]): g for g in groups}
    for name, p in model.named_parameters():
        g = by_param[id(p)]
        if is_rope_parameter(name):
            assert g["weight_decay"] == 0.0 and g["lr"] == pytest.approx(1e-5), name
        elif name.endswith("qkv.weight"):
            assert g["weight_decay"] == pytest.approx(1e-4) and g["lr"] == pytest.approx(1e-5), name


# -- checkpoints -----------------------------------------------------------------------------------------------------
def _naver_file(model: RoPEViT) -> dict:
    """A naver RoPE-ViT file (flat mixed ``freqs``, position buffers, classifier) from a RoPE-Mixed model."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if ".attn.rope.freqs" not in k}
    if model.rope_type == "mixed":
        sd["freqs"] = torch.stack([b.attn.rope.freqs.detach() for b in model.blocks], dim=1).reshape(2, model.depth,
                                                                                                     -1)
        sd["freqs_t_x"], sd["freqs_t_y"] = torch.arange(64.0) % 8, torch.arange(64.0) // 8
    sd["head.weight"], sd["head.bias"] = torch.zeros(10, model.embed_dim), torch.zeros(10)
    return {"model": sd}


@pytest.mark.parametrize("mode", BACKBONE_MODES)
def test_rope_mixed_checkpoint_loads_everything_but_the_new_rope_parameters(mode):
    torch.manual_seed(0)
    src = RoPEViT(**TINY_VIT, rope_type="mixed")
    dst = RoPEViT(**TINY_VIT, rope_type=mode, window_size=4, global_block_indexes=(1,))
    own = {k: v.clone() for k, v in dst.state_dict().items() if is_rope_parameter(k)}
    report = load_pretrained(dst, _naver_file(src))  # strict
    assert report.ok, str(report)
    assert sorted(report.initialized) == sorted(own)
    assert {"blocks.0.attn.rope.freqs", "blocks.1.attn.rope.freqs"} <= set(report.dropped)
    assert "kept at their initialisation" in str(report)
    for k, v in dst.state_dict().items():
        expected = own[k] if k in own else src.state_dict()[k]
        torch.testing.assert_close(v, expected, rtol=0, atol=0, msg=k)


def test_ape_checkpoint_needs_an_ape_or_non_strict_loading():
    torch.manual_seed(0)
    src = RoPEViT(**TINY_VIT, rope_type=None, use_ape=True)
    with pytest.raises(CheckpointError, match="pos_embed"):
        load_pretrained(RoPEViT(**TINY_VIT, rope_type="liere"), _naver_file(src))
    report = load_pretrained(RoPEViT(**TINY_VIT, rope_type="liere", use_ape=True), _naver_file(src))
    assert report.ok and report.initialized == ["rope.generators"]
    report = load_pretrained(RoPEViT(**TINY_VIT, rope_type="liere-per-layer"), _naver_file(src), strict=False)
    assert report.unexpected == ["pos_embed"]
    assert report.initialized == ["blocks.0.attn.rope.generators", "blocks.1.attn.rope.generators"]


@pytest.mark.parametrize("mode", BACKBONE_MODES)
def test_checkpoint_of_the_same_mode_loads_its_rope_parameters(mode):
    torch.manual_seed(0)
    src = RoPEViT(**TINY_VIT, rope_type=mode)
    torch.manual_seed(1)
    dst = RoPEViT(**TINY_VIT, rope_type=mode)
    report = load_pretrained(dst, {f"backbone.{k}": v for k, v in src.state_dict().items()})
    assert report.ok and not report.initialized and not report.dropped
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0, msg=k)
    first = min(k for k in src.state_dict() if is_rope_parameter(k))
    wrong = {k: (v[..., :1] if k == first else v) for k, v in src.state_dict().items()}
    with pytest.raises(CheckpointError, match="shape mismatch"):  # its own mode, broken: not silently re-initialised
        load_pretrained(dst, wrong)


def test_checkpoint_of_another_learned_mode_or_block_size_is_refused():
    """Only published frequencies (RoPE-Mixed, axial) or none are replaced by a fresh initialisation; parameters
    of another learned mode are a mistake that strict loading names."""
    src = RoPEViT(**TINY_VIT, rope_type="liere", rope_block_size=4)
    for kwargs in (dict(rope_type="liere"), dict(rope_type="comrope-ap", rope_block_size=4),
                   dict(rope_type="spherical"), dict(rope_type="liere-per-layer", rope_block_size=4)):
        with pytest.raises(CheckpointError, match="strict loading"):
            load_pretrained(RoPEViT(**TINY_VIT, **kwargs), src.state_dict())


def test_swin_rope_mixed_weights_load_into_a_comrope_swin():
    kw = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4)
    torch.manual_seed(0)
    src = RoPESwin(**kw, rope_type="mixed")
    dst = RoPESwin(**kw, rope_type="comrope-ld")
    report = load_pretrained(dst, src.state_dict())
    assert report.ok, str(report)
    assert sorted(report.initialized) == sorted(k for k in dst.state_dict() if is_rope_parameter(k))
    assert len(report.dropped) == 4 and all(k.endswith("attn.rope.freqs") for k in report.dropped)


# -- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(rope_type="liere", rope_block_size=5), "LieRE needs head_dim divisible by block_size=5"),
    (dict(rope_type="comrope-ap", rope_block_size=16), r"divisible by 2 x block_size = 32"),
    (dict(rope_type="comrope-ld", rope_block_size=1), "block_size must be an int >= 2"),
    (dict(rope_type="mixed", rope_block_size=8), "rope_block_size applies to"),
    (dict(rope_type="liere", rope_theta=10.0), "rope_theta has no meaning"),
    (dict(rope_type="spherical", embed_dim=4, num_heads=2), "head_dim >= 3"),
    (dict(rope_type="helix"), "unknown RoPE mode"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RoPEViT(**{**TINY_VIT, **kwargs})
    if "embed_dim" not in kwargs:
        with pytest.raises(ValueError, match=message):
            RoPESwin(embed_dim=32, depths=(2,), num_heads=(2,), window_size=4, **kwargs)


def _linear_case(g: torch.Generator, pairs: int = 6, n: int = 8, dtype=torch.float32):
    """Generator pairs of norms from 0.01 to ~300 per unit and positions from the origin to 40 units, both signs."""
    a, b = (torch.randn(pairs, n, n, generator=g, dtype=torch.float64) for _ in range(2))
    sizes = torch.logspace(-2, 1.5, pairs, dtype=torch.float64)[:, None, None]
    a, b = (a - a.mT) * sizes, (b - b.mT) * sizes
    coords = torch.cat((torch.zeros(1, 2, dtype=torch.float64),
                        torch.rand(40, 2, generator=g, dtype=torch.float64) * 80 - 40))
    return a.to(dtype), b.to(dtype), coords.to(dtype)


def _linear_arg(a, b, coords):
    """``x a_g + y b_g`` per (token, pair), in the inputs' dtype."""
    return coords[:, 0, None, None, None] * a + coords[:, 1, None, None, None] * b


def _linear_oracle(a, b, coords):
    return _expm_oracle(_linear_arg(a.double(), b.double(), coords.double()))


def _assert_gradients_match_torch(a, b, coords, w):
    """Gradients of ``sum(expm_linear * w)`` to ``a`` and ``b`` against those through ``torch.linalg.matrix_exp``."""
    from ropevit_dense.rope.expm import expm_linear, expm_polynomial

    a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    got = torch.autograd.grad((expm_linear(expm_polynomial(a1, b1), coords) * w).sum(), (a1, b1))
    want = torch.autograd.grad((torch.linalg.matrix_exp(_linear_arg(a1, b1, coords)) * w).sum(), (a1, b1))
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4 * y.abs().max().item())


def test_expm_linear_matches_the_float64_exponential_and_torch_in_float32():
    """The polynomial-in-position exponential (one product for all tokens' polynomials, squarings per token) against
    the float64 eigendecomposition oracle: within 8 float32 ulps of ``1 + ||x A + y B||``, as torch's own
    ``matrix_exp`` of the same float32 arguments is; float64 to 1e-12."""
    from ropevit_dense.rope.expm import expm_linear, expm_polynomial

    g = torch.Generator().manual_seed(5)
    a, b, coords = _linear_case(g)
    ref = _linear_oracle(a, b, coords)
    norm = torch.linalg.matrix_norm(_linear_arg(a.double(), b.double(), coords.double()), ord=2)
    assert norm.max() > 1000 and norm.min() == 0
    ours = (expm_linear(expm_polynomial(a, b), coords).double() - ref).abs().amax(dim=(-1, -2))
    theirs = (torch.linalg.matrix_exp(_linear_arg(a, b, coords)).double() - ref).abs().amax(dim=(-1, -2))
    assert (ours <= 8 * EPS32 * (1 + norm)).all(), f"worst error / bound {(ours / (EPS32 * (1 + norm))).max():.2f}"
    assert ours.max() <= 4 * theirs.max()
    a64, b64, c64 = a.double(), b.double(), coords.double()
    torch.testing.assert_close(expm_linear(expm_polynomial(a64, b64), c64), ref, rtol=0,
                               atol=1e-12 * (1 + norm.max().item()))


def test_expm_linear_gradients_match_torch_and_differentiate_twice():
    """Gradients to the generators (recomputed squarings in the backward) equal those through
    ``torch.linalg.matrix_exp`` (float32), pass gradcheck in float64, and a second derivative runs (gradgradcheck)."""
    from ropevit_dense.rope.expm import expm_linear, expm_polynomial

    g = torch.Generator().manual_seed(6)
    a, b, coords = _linear_case(g, pairs=3, n=4)
    coords = coords[:12] / 8  # norms up to ~40: several squaring counts among the tokens
    _assert_gradients_match_torch(a, b, coords, torch.randn(coords.shape[0], 3, 4, 4, generator=g))

    def fn(a_, b_):
        return expm_linear(expm_polynomial(a_ - a_.mT, b_ - b_.mT), coords.double()[:6])

    a64, b64 = (t.double().triu(1).requires_grad_(True) for t in (a[:2] / 4, b[:2] / 4))
    torch.autograd.gradcheck(fn, (a64, b64))
    torch.autograd.gradgradcheck(fn, (a64, b64), fast_mode=True)


def test_expm_linear_squares_half_position_rotations_on_integer_grids():
    """On an integer grid a token at ``(2i, 2j)`` is the square of the token at ``(i, j)`` (several levels deep, both
    signs, a grid not at the origin): values against the float64 oracle as for any token, gradients as torch's."""
    from ropevit_dense.rope.expm import _doublings, expm_linear, expm_polynomial

    g = torch.Generator().manual_seed(7)
    a, b, _ = _linear_case(g, pairs=4, n=4)
    a, b = a[1:] / 4, b[1:] / 4  # norms within a factor 10: one or two groups
    ys, xs = torch.meshgrid(torch.arange(-6.0, 10.0), torch.arange(-3.0, 13.0), indexing="ij")
    coords = torch.stack((xs.flatten(), ys.flatten()), -1)[torch.randperm(256, generator=g)]
    plan = _doublings(coords)
    assert plan is not None and len(plan.parents) >= 2 and len(plan.primary) < 0.8 * len(coords)
    assert _doublings(coords + 0.5) is None  # fractional positions: every token computed
    ref = _linear_oracle(a, b, coords)
    norm = torch.linalg.matrix_norm(_linear_arg(a.double(), b.double(), coords.double()), ord=2)
    err = (expm_linear(expm_polynomial(a, b), coords).double() - ref).abs().amax(dim=(-1, -2))
    assert (err <= 8 * EPS32 * (1 + norm)).all(), f"worst error / bound {(err / (EPS32 * (1 + norm))).max():.2f}"
    _assert_gradients_match_torch(a, b, coords, torch.randn(len(coords), 3, 4, 4, generator=g))


def test_expm_linear_rejects_what_it_cannot_compute():
    from ropevit_dense.rope.expm import expm_polynomial

    with pytest.raises(ValueError, match="float32 or float64"):
        expm_polynomial(torch.zeros(2, 4, 4, dtype=torch.bfloat16), torch.zeros(2, 4, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"\(G, n, n\)"):
        expm_polynomial(torch.zeros(2, 4, 4), torch.zeros(3, 4, 4))


@pytest.mark.parametrize("mode", ["liere", "comrope-ap"])
def test_generator_polynomial_is_kept_in_inference_until_the_generators_change(mode):
    """The position-independent coefficients of the block exponential (LieRE; ComRoPE with odd blocks) are
    computed once for repeated inference, afresh after an in-place update and whenever gradients are recorded."""
    import ropevit_dense.rope.generators as generators

    module = _module(mode, block_size=3, head_dim=12)
    coords = grid_coords(4, 5)
    calls = []
    real = generators.generator_polynomial

    def counting(gen):
        calls.append(1)
        return real(gen)

    generators.generator_polynomial = counting
    try:
        with torch.no_grad():
            first = module(coords).blocks
            again = module(coords).blocks
            assert len(calls) == 1
            module.generators.mul_(1.5)
            changed = module(coords).blocks
            assert len(calls) == 2
        fresh = module(coords).blocks
        assert len(calls) == 3 and fresh.requires_grad
    finally:
        generators.generator_polynomial = real
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    torch.testing.assert_close(fresh.detach(), changed, rtol=0, atol=0)
    assert not torch.equal(changed, first)


@pytest.mark.parametrize("mode", ["comrope-ap", "comrope-ld"])
def test_comrope_inference_reuses_its_eigenbasis_until_the_generators_change(mode):
    module = _module(mode, block_size=4)
    coords = grid_coords(5, 6)
    with torch.no_grad():
        first, again = module(coords), module(coords)
        assert again.basis is first.basis  # one eigendecomposition for repeated inference
        module.generators.mul_(1.5)  # an in-place update (optimizer step, load_state_dict) invalidates it
        changed = module(coords)
    assert changed.basis is not first.basis
    fresh = module(coords)  # with gradients: computed afresh, and equal
    torch.testing.assert_close(fresh.basis.detach(), changed.basis, rtol=0, atol=0)
    torch.testing.assert_close(fresh.sin.detach(), changed.sin, rtol=0, atol=0)
    assert fresh.basis.requires_grad
