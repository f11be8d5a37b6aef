"""``expm(x A + y B)`` of every token ``(x, y)`` for many small skew-symmetric ``A``, ``B`` (LieRE's rotation blocks).

The argument is linear in the position, so its Taylor polynomial is a polynomial in ``(x, y)`` with matrix
coefficients: ``(x A + y B)^k`` is the sum over ``j`` of ``x^(k-j) y^j S_kj``, ``S_kj`` the sum of the words in
``A`` and ``B`` with ``j`` letters ``B`` (``S_kj = A S_(k-1)j + B S_(k-1)(j-1)``). The coefficients are built once
from the generators (a few small products per generator pair, not per token; :func:`expm_polynomial`, which a
module keeps while its generators do not change), and the polynomial of every token is then one matrix product
``(tokens x monomials) @ (monomials x entries)``, the scaling of scaling-and-squaring being a scaling of the token's
coordinates. What stays per token are the squarings.

Why not ``torch.linalg.matrix_exp`` (or a batched Taylor / Pade of each token's matrix): those evaluate the
polynomial by matrix products of every (token, generator) matrix, five or six ``b x b`` products per matrix before
the squarings; tiny batched products are the slow kernel here (8 x 8: a sixth of a large product's rate on CPU),
while the one large product above runs at full rate.

Accuracy: ``x A + y B`` is skew-symmetric (normal), so ``||M^k||_2 = ||M||_2^k`` and the truncation error of the
degree-``d`` Taylor polynomial at ``||M||_2 <= theta`` is at most ``sum_{k > d} theta^k / k!``; ``theta`` is the
largest value keeping that below ``2^-25`` (float32) or ``2^-54`` (float64). Each token is scaled by ``2^-s`` with
``s`` from the bound ``|x| ||A||_2 + |y| ||B||_2`` (the largest over a group of pairs whose norms are within a
factor 2), then squared ``s`` times, so near the origin there are no squarings and errors grow with a token's own
``||M||`` only.
The backward recomputes the squarings instead of keeping each one's input (they would be ``s`` tables per layer).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

_TOLERANCE = {torch.float32: 2.0 ** -25, torch.float64: 2.0 ** -54}
_DEGREE = {torch.float32: 12, torch.float64: 18}


def _theta(degree: int, tol: float) -> float:
    """Largest ``t`` with ``sum_{k > degree} t^k / k! <= tol`` (bisection; the tail is increasing in ``t``)."""
    def tail(t: float) -> float:  # summed term by term: exp(t) minus the polynomial would cancel below 1e-16
        return sum(t ** k / math.factorial(k) for k in range(degree + 1, degree + 60))

    lo, hi = 0.0, 8.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) <= tol else (lo, mid)
    return lo


_THETA = {dtype: _theta(_DEGREE[dtype], tol) for dtype, tol in _TOLERANCE.items()}


def _word_sums(a: torch.Tensor, b: torch.Tensor, degree: int) -> torch.Tensor:
    """``S_kj / k!`` for ``k <= degree``, ``j <= k``, stacked ``(monomials, G, n, n)`` in the order of
    :func:`_monomials` (``k`` ascending, then ``j``).

    Level ``k`` is kept as ``(G, n, (k + 1) n)``, its matrices side by side, so that one batched product
    ``[A; B] @ level`` gives both the words that start with ``A`` (``j`` kept) and with ``B`` (``j`` raised)."""
    g, n = a.shape[0], a.shape[-1]
    stacked = torch.cat((a, b), dim=-2)  # (G, 2n, n)
    level = torch.eye(n, dtype=a.dtype, device=a.device).expand(g, n, n)  # S_00
    levels = [level.unsqueeze(0)]
    for k in range(1, degree + 1):
        prod = torch.bmm(stacked, level.reshape(g, n, -1)) / k  # (G, 2n, k n)
        pad = prod.new_zeros(g, n, n)
        level = torch.cat((prod[:, :n], pad), dim=-1) + torch.cat((pad, prod[:, n:]), dim=-1)  # (G, n, (k+1) n)
        levels.append(level.view(g, n, k + 1, n).permute(2, 0, 1, 3))
    return torch.cat(levels)


def _monomials(u: torch.Tensor, v: torch.Tensor, degree: int) -> torch.Tensor:
    """``u^(k-j) v^j`` for ``k <= degree``, ``j <= k``: ``(N, monomials)``."""
    ones = torch.ones_like(u).unsqueeze(-1)
    pu = torch.cat((ones, u.unsqueeze(-1).expand(-1, degree).cumprod(-1)), -1)  # u^0 .. u^degree
    pv = torch.cat((ones, v.unsqueeze(-1).expand(-1, degree).cumprod(-1)), -1)
    k = torch.tensor([k for k in range(degree + 1) for _ in range(k + 1)], device=u.device)
    j = torch.tensor([j for k in range(degree + 1) for j in range(k + 1)], device=u.device)
    return pu[:, k - j] * pv[:, j]


def _spectral_bounds(m: torch.Tensor, squarings: int = 4) -> torch.Tensor:
    """Upper bounds of ``||m||_2`` of real skew-symmetric matrices, within ``(b / 2)^(2^-(squarings + 1))`` (4
    squarings: 1.044 for ``b = 8``): the eigenvalues come in pairs ``+-i w_k``, so ``||m^p||_F^2 = 2 sum w_k^(2p)
    >= 2 ||m||_2^(2p)``. A few products of the generators themselves, far cheaper than an eigensolver."""
    scale = torch.linalg.matrix_norm(m).clamp(min=torch.finfo(m.dtype).tiny)  # Frobenius >= ||m||_2
    p = m / scale[..., None, None]
    for _ in range(squarings):  # ||p||_2 <= 1: no overflow; no underflow either, ||m||_2 >= ||m||_F / sqrt(b)
        p = p @ p
    bound = scale * (torch.linalg.matrix_norm(p) / math.sqrt(2)).pow(2.0 ** -squarings)
    return bound * (1 + 64 * torch.finfo(m.dtype).eps)  # the rounding of the products, upwards


def _bmm_square(src: torch.Tensor, out: torch.Tensor) -> None:
    n = src.shape[-1]
    torch.bmm(src.view(-1, n, n), src.view(-1, n, n), out=out.view(-1, n, n))


class _PolySquare(torch.autograd.Function):
    """``poly = mono @ coeffs``, rows sorted by their number of squarings (descending), squared in place on the
    prefix each step needs, rows handed back in their order before the sort (sorted row ``i`` was row ``order[i]``).

    Forward: the polynomial goes into the second of two buffers and the steps alternate between them, so a row with
    ``k`` steps ends in buffer ``(k - 1) mod 2``; one gather returns every row from its buffer in that order. The
    backward recomputes the polynomial and the steps instead of keeping them (``s`` tables per layer)."""

    @staticmethod
    def forward(ctx, mono, coeffs, counts, steps, order):
        num, g, n = mono.shape[0], coeffs.shape[1], coeffs.shape[-1]
        bufs = mono.new_empty((2, num, g, n, n))
        torch.mm(mono, coeffs.flatten(1), out=bufs[1].view(num, -1))
        for t, c in enumerate(counts):
            _bmm_square(bufs[(t + 1) % 2, :c], bufs[t % 2, :c])
        ctx.save_for_backward(mono, coeffs, order)
        ctx.counts = counts
        source = order.new_empty(num)
        source[order] = torch.arange(num, device=order.device) + num * ((steps + 1) % 2)  # row, then its buffer
        return bufs.view(2 * num, g, n, n).index_select(0, source)

    @staticmethod
    def backward(ctx, grad):
        mono, coeffs, order = ctx.saved_tensors
        num = mono.shape[0]
        cur = (mono @ coeffs.flatten(1)).view(num, *coeffs.shape[1:])
        inputs = []  # each step's input (its prefix)
        for c in ctx.counts:
            inputs.append(cur[:c])
            cur = torch.cat((cur[:c] @ cur[:c], cur[c:]))
        g = grad.index_select(0, order)  # sorted rows
        for c, x in zip(reversed(ctx.counts), reversed(inputs)):
            xt = x.transpose(-1, -2)
            g = torch.cat((g[:c] @ xt + xt @ g[:c], g[c:]))  # d(X X) = dX X + X dX; out of place: differentiable
        d_mono = g.flatten(1) @ coeffs.flatten(1).T if ctx.needs_input_grad[0] else None
        d_coeffs = (mono.T @ g.flatten(1)).view_as(coeffs) if ctx.needs_input_grad[1] else None
        return d_mono, d_coeffs, None, None, None


class _Group(NamedTuple):
    coeffs: torch.Tensor  # (monomials, G', n, n): S_kj / k! of (a / unit, b / unit) for the group's pairs
    norm_a: torch.Tensor  # (G',) >= ||a_g||_2
    norm_b: torch.Tensor  # (G',) >= ||b_g||_2
    unit: torch.Tensor  # () the common scale of the group's a and b


class ExpmPolynomial(NamedTuple):
    """What :func:`expm_linear` needs of a set of generator pairs, independent of the positions (a module can keep
    it while its generators do not change): the pairs in groups of norms within a factor 2 of each other, each
    group's Taylor coefficients and norm bounds, and the order that puts the groups' pairs back."""

    groups: tuple[_Group, ...]
    order: Optional[torch.Tensor]  # (G,) position of pair g in the groups' concatenation; None for one group


# Both entry points run eagerly under torch.compile: their loops depend on the generators' values (groups, numbers of
# squarings), which a traced graph would take as constants and recompile for.
@torch.compiler.disable
def expm_polynomial(a: torch.Tensor, b: torch.Tensor) -> ExpmPolynomial:
    """The coefficients of ``expm(x a_g + y b_g)``, differentiable in ``a`` and ``b``.

    Every token takes one number of squarings for all pairs of a group (the largest the group needs at that
    position), so pairs are grouped by size: a pair much smaller than another would otherwise be squared more often
    than its own norm asks for, each squaring doubling its rounding error.

    Args:
        a (Tensor): ``(G, n, n)`` real skew-symmetric, float32 or float64.
        b (Tensor): ``(G, n, n)`` the same.
    """
    if a.dtype not in _DEGREE or b.dtype != a.dtype or a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expm_polynomial needs two (G, n, n) float32 or float64 tensors, got {tuple(a.shape)} "
                         f"{a.dtype} and {tuple(b.shape)} {b.dtype}")
    with torch.no_grad():
        norm_a, norm_b = _spectral_bounds(torch.stack((a, b))).unbind()
        size, by_size = torch.sort(torch.maximum(norm_a, norm_b), descending=True)
        bounds, start = [], 0
        values = size.tolist()
        for i, value in enumerate(values):
            if value < values[start] / 2:
                bounds.append((start, i))
                start = i
        bounds.append((start, len(size)))
    groups = []
    for lo, hi in bounds:
        idx = None if (lo, hi) == (0, len(size)) else by_size[lo:hi]
        ga, gb = (a, b) if idx is None else (a.index_select(0, idx), b.index_select(0, idx))
        na, nb = (norm_a, norm_b) if idx is None else (norm_a[idx], norm_b[idx])
        # one scale for a and b keeps the coefficients S_kj / k! near 1 whatever the generators' size
        unit = size[lo].clamp(min=torch.finfo(a.dtype).tiny)
        groups.append(_Group(_word_sums(ga / unit, gb / unit, _DEGREE[a.dtype]), na, nb, unit))
    order = None if len(groups) == 1 else torch.argsort(by_size)
    return ExpmPolynomial(tuple(groups), order)


class _Doublings(NamedTuple):
    primary: torch.Tensor  # (P,) tokens computed by the polynomial and squarings
    parents: list[torch.Tensor]  # per level, the row of each token's half-position token in the previous level
    rows: torch.Tensor  # (N,) row of each token in the concatenation of the levels (primary first)


def _doublings(coords: torch.Tensor) -> Optional[_Doublings]:
    """Tokens whose rotation is the square of another token's: ``expm(2 M) = expm(M)^2``, and ``M`` is linear in the
    position, so a token at ``(2i, 2j)`` (both even, not the origin) is its half-position token's rotation squared
    when ``(i, j)`` is a token too: one product instead of a polynomial and a few squarings (a quarter of a grid's
    tokens). Levels: a token's half-position token may itself be derived (``(4i, 4j)`` from ``(2i, 2j)``). None when
    the positions are not integers (fractional grids) or nothing is derived."""
    num = coords.shape[0]
    if num < 4 or not torch.equal(coords, coords.round()):
        return None
    c = coords.to(torch.int64)
    lo, span = c.amin(0), c.amax(0) - c.amin(0) + 1
    if int(span[0]) * int(span[1]) > 16 * num:  # sparse positions: no lookup table over their range
        return None
    lookup = torch.full((int(span[0] * span[1]),), -1, dtype=torch.int64, device=c.device)
    lookup[(c[:, 0] - lo[0]) * span[1] + (c[:, 1] - lo[1])] = torch.arange(num, device=c.device)
    half = torch.div(c, 2, rounding_mode="floor")
    derived = (c % 2 == 0).all(-1) & (c != 0).any(-1) & ((half >= lo) & (half < lo + span)).all(-1)
    inside = torch.minimum(torch.maximum(half, lo), lo + span - 1)
    parent = torch.where(derived, lookup[(inside[:, 0] - lo[0]) * span[1] + (inside[:, 1] - lo[1])], -1)
    derived = parent >= 0
    if not derived.any():
        return None
    depth = torch.zeros(num, dtype=torch.int64, device=c.device)
    while True:  # a half-position is nearer the origin: this ends after log2(range) rounds
        new = torch.where(derived, depth[parent.clamp(min=0)] + 1, 0)
        if torch.equal(new, depth):
            break
        depth = new
    rows = torch.empty(num, dtype=torch.int64, device=c.device)
    primary = (depth == 0).nonzero().squeeze(1)
    rows[primary] = torch.arange(len(primary), device=c.device)
    parents, start, prev = [], len(primary), 0
    for level in range(1, int(depth.max()) + 1):
        tokens = (depth == level).nonzero().squeeze(1)
        parents.append(rows[parent[tokens]] - prev)
        rows[tokens] = torch.arange(start, start + len(tokens), device=c.device)
        prev, start = start, start + len(tokens)
    return _Doublings(primary, parents, rows)


def _expm_group(group: _Group, coords: torch.Tensor) -> torch.Tensor:
    coeffs, norm_a, norm_b, unit = group
    dtype = coeffs.dtype
    degree, theta = _DEGREE[dtype], _THETA[dtype]
    with torch.no_grad():
        doublings = _doublings(coords)
    own = coords if doublings is None else coords[doublings.primary]
    x, y = own[:, 0], own[:, 1]
    with torch.no_grad():
        bound = (x.abs()[:, None] * norm_a + y.abs()[:, None] * norm_b).amax(-1)  # >= ||x a_g + y b_g||_2, all g
        steps = torch.ceil(torch.log2(bound / theta)).clamp(min=0).to(torch.int64)
        steps, order = torch.sort(steps, descending=True, stable=True)
        max_steps = int(steps[0]) if len(steps) else 0
        counts = [int(c) for c in (steps[None, :] > torch.arange(max_steps, device=steps.device)[:, None]).sum(-1)]
        scale = torch.exp2(-steps.to(dtype)) * unit
    mono = _monomials(x[order] * scale, y[order] * scale, degree)  # (N, monomials), tokens in squaring order
    out = _PolySquare.apply(mono, coeffs, counts, steps, order)
    if doublings is None:
        return out
    levels = [out]
    for parents in doublings.parents:
        half = levels[-1].index_select(0, parents)
        levels.append(half @ half)
    return torch.cat(levels).index_select(0, doublings.rows)


@torch.compiler.disable
def expm_linear(polynomial: ExpmPolynomial, coords: torch.Tensor) -> torch.Tensor:
    """``expm(x a_g + y b_g)`` for every token ``(x, y)`` and generator pair ``g``.

    Args:
        polynomial (ExpmPolynomial): of the pairs ``(a_g, b_g)``, from :func:`expm_polynomial`.
        coords (Tensor): ``(N, 2)`` positions.

    Returns:
        Tensor: ``(N, G, n, n)`` orthogonal matrices, in the dtype of the polynomial; differentiable in the
        generators the polynomial was built from.
    """
    coords = coords.to(polynomial.groups[0].coeffs.dtype)
    outs = [_expm_group(group, coords) for group in polynomial.groups]
    return outs[0] if polynomial.order is None else torch.cat(outs, dim=1).index_select(1, polynomial.order)
