"""Matrix exponentials of many small matrices at once (LieRE's per-token rotation blocks).

``torch.linalg.matrix_exp`` picks a Taylor degree and a number of squarings per matrix, which for tens of
thousands of 8 x 8 matrices costs more in sorting and gathering than in arithmetic. Here every matrix gets the same
degree-10 Taylor polynomial (Paterson-Stockmeyer: 5 products) of ``M / 2^s`` with the scaled 1-norm at most 1, where
its truncation error ``1 / 11!`` is below float32 resolution, then ``s`` squarings (float32; float64 goes to
``torch.linalg.matrix_exp``); the matrices are grouped by
their ``s`` (one group per distinct value). The backward is the Frechet derivative, the upper-right block of the
exponential of ``[[M^T, G], [0, M^T]]`` (as PyTorch computes it), by the same routine; a backward that is itself
differentiated (``create_graph=True``) uses ``torch.linalg.matrix_exp`` there.
"""

from __future__ import annotations

import math

import torch

_THETA = 1.0  # scaled 1-norm bound of the Taylor polynomial
_COEFFS = [1.0 / math.factorial(k) for k in range(11)]


def _poly(a: torch.Tensor, a2: torch.Tensor, a3: torch.Tensor, c: list[float]) -> torch.Tensor:
    """``c[0] I + c[1] a + c[2] a^2 (+ c[3] a^3)``, in place on one new tensor (the identity added on the diagonal)."""
    out = torch.add(a, a2, alpha=c[2] / c[1]).mul_(c[1])
    if len(c) > 3:
        out.add_(a3, alpha=c[3])
    out.diagonal(dim1=-2, dim2=-1).add_(c[0])
    return out


def _taylor10(a: torch.Tensor) -> torch.Tensor:
    """``sum_{k <= 10} a^k / k!`` of ``(B, n, n)`` in 5 products: ``C0 + A^4 (C1 + A^4 C2)``, ``C_j`` in
    span(I, A, A^2, A^3)."""
    c = _COEFFS
    a2 = torch.bmm(a, a)
    a3 = torch.bmm(a2, a)
    a4 = torch.bmm(a2, a2)
    inner = torch.baddbmm(_poly(a, a2, a3, c[4:8]), a4, _poly(a, a2, a3, c[8:11]))
    return torch.baddbmm(_poly(a, a2, a3, c[0:4]), a4, inner)


def _expm(m: torch.Tensor) -> torch.Tensor:
    """Scaling and squaring, no autograd: ``m`` ``(..., n, n)``. float64 (gradient checks) is left to
    ``torch.linalg.matrix_exp``, whose degrees follow float64's resolution."""
    if m.dtype == torch.float64:
        return torch.linalg.matrix_exp(m)
    flat = m.reshape(-1, *m.shape[-2:])
    norm = flat.abs().sum(-2).amax(-1)  # induced 1-norm of each matrix
    squarings = torch.clamp(torch.ceil(torch.log2(norm / _THETA)), min=0).to(torch.int64)
    out = torch.empty_like(flat)
    for s in torch.unique(squarings).tolist():
        idx = (squarings == s).nonzero().squeeze(1)
        r = _taylor10(flat.index_select(0, idx).mul_(0.5 ** s))
        for _ in range(s):
            r = torch.bmm(r, r)
        out.index_copy_(0, idx, r)
    return out.view_as(m)


class _MatrixExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(m)
        return _expm(m)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (m,) = ctx.saved_tensors
        n = m.shape[-1]
        mt = m.transpose(-1, -2)
        # the derivative is linear in the gradient: exponentiate the block with a unit-size gradient, rescale after
        scale = grad.abs().amax(dim=(-1, -2), keepdim=True).clamp(min=torch.finfo(grad.dtype).tiny)
        block = torch.cat((torch.cat((mt, grad / scale), dim=-1),
                           torch.cat((torch.zeros_like(mt), mt), dim=-1)), dim=-2)
        exp = torch.linalg.matrix_exp(block) if torch.is_grad_enabled() else _expm(block)
        return exp[..., :n, n:] * scale


def matrix_exp(m: torch.Tensor) -> torch.Tensor:
    """``expm`` of every ``(..., n, n)`` matrix (float32 / float64), differentiable; see the module docstring."""
    return _MatrixExp.apply(m)
