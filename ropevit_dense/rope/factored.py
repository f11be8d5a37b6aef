"""RoPE on a token grid, factored by axis: the rotation of token ``(y, x)`` is ``exp(i y fy) * exp(i x fx)``.

A pair rotation by ``theta = x fx + y fy`` is the product of a rotation by ``x fx`` and one by ``y fy``. On a grid the
two factors depend on one coordinate each, so a table of ``W + H`` entries per (head, pair) describes the rotation of
all ``W * H`` tokens. This module rotates queries and keys by the two factors in turn, in place, in the token-major
layout the qkv projection writes (``(B, H, W, 2, heads, head_dim)`` for the queries and keys of a grid): two
vectorised complex products over memory that is read in order, and no ``(heads, W * H, pairs)`` table built, stored
or read per block. RoPE-Mixed's learned frequencies get their gradient from the same factors: the angle gradient of
every token, summed over rows for ``x`` and over columns for ``y``.

The factors of every RoPE-Mixed block of a backbone are computed together, once per forward and grid
(:func:`factored_tables`): one product and one sin / cos over a ``(blocks, W + H, heads, pairs)`` buffer instead of
one small table build per block.

This is the eager float32 / float64 form. Traced code (``torch.compile``, ``torch.export``) and half-precision
storage take the plain table (:meth:`FactoredRopeTable.table`) and :func:`~ropevit_dense.rope.rotation.apply_rope`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Union

import torch

from .grid import GridCoords
from .rotation import BlockRopeTable, RopeTable, Select, _rotate_autograd


class FactoredRopeTable(NamedTuple):
    """The rotations of an ``H x W`` grid by axis, for one attention layer.

    ``ex`` ``(W, heads, pairs)`` and ``ey`` ``(H, heads, pairs)`` are the complex rotations ``cos + i sin`` of the
    column and row angles ``ax = x * fx`` and ``ay = y * fy``, which ``ax`` / ``ay`` hold as real tensors (connected
    to the learned frequencies when they are learned; the rotations themselves are plain values).
    """

    ex: torch.Tensor
    ey: torch.Tensor
    ax: torch.Tensor
    ay: torch.Tensor

    @property
    def hw(self) -> tuple[int, int]:
        """The grid ``(H, W)``."""
        return self.ey.shape[0], self.ex.shape[0]

    def table(self) -> RopeTable:
        """The same rotations as a :class:`RopeTable` ``(heads, H * W, pairs)`` (token order row-major), for the
        paths that read a table: traced code, half-precision storage, relative position bias, cls-token prefixes
        that need :meth:`RopeTable.with_prefix`."""
        rot = (self.ey[:, None] * self.ex[None]).flatten(0, 1).transpose(0, 1)
        learned = self.ax.requires_grad or self.ay.requires_grad
        angles = (self.ay[:, None] + self.ax[None]).flatten(0, 1).transpose(0, 1) if learned else None
        return RopeTable(rot.imag, rot.real, angles, None, rot)


RopeArg = Union[RopeTable, BlockRopeTable, FactoredRopeTable,
                Callable[[], Union[RopeTable, BlockRopeTable, FactoredRopeTable]]]
"""What attention takes as its RoPE: a table, or a zero-argument callable that builds it. A callable lets a learned
table be built inside the attention call and freed right after it, instead of living through the whole block."""


def factored_tables(freqs: Sequence[torch.Tensor], grid: GridCoords) -> list[FactoredRopeTable]:
    """Factored tables of several layers' frequencies on one grid, computed together.

    Args:
        freqs (Sequence[Tensor]): per layer, ``(2, heads, pairs)`` x then y frequencies, all of one shape.
        grid (GridCoords): the grid's axes.

    Returns:
        list[FactoredRopeTable]: one per entry of ``freqs``; gradients reach every layer's frequencies through the
        tables' ``ax`` / ``ay``.
    """
    if not freqs:
        return []
    shapes = {tuple(f.shape) for f in freqs}
    if len(shapes) > 1:
        raise ValueError(f"factored_tables: frequencies of one shape expected, got {sorted(shapes)}")
    with torch.autocast(device_type=freqs[0].device.type, enabled=False):
        dtype = torch.promote_types(freqs[0].dtype, torch.float32)
        fr = torch.stack([f.detach() for f in freqs]).to(dtype)  # (layers, 2, heads, pairs)
        xs, ys = grid.xs.to(dtype)[:, None, None], grid.ys.to(dtype)[:, None, None]
        W = xs.shape[0]
        # both axes of every layer in one buffer (layers, W + H, heads, pairs), cos and sin written straight into
        # the parts of one complex buffer
        angles = fr.new_empty((fr.shape[0], W + ys.shape[0], *fr.shape[2:]))
        torch.mul(xs, fr[:, 0, None], out=angles[:, :W])
        torch.mul(ys, fr[:, 1, None], out=angles[:, W:])
        rot = torch.empty(angles.shape, dtype=dtype.to_complex(), device=angles.device)
        parts = torch.view_as_real(rot)
        torch.cos(angles, out=parts[..., 0])
        torch.sin(angles, out=parts[..., 1])
        tables = []
        for i, f in enumerate(freqs):
            if f.requires_grad and torch.is_grad_enabled():
                # learned: each layer's own angles, connected to its frequencies (slices of one shared buffer would
                # give every layer's backward a zero-filled gradient of the whole buffer)
                ax, ay = xs * f[0].to(dtype), ys * f[1].to(dtype)
            else:
                ax, ay = angles[i, :W], angles[i, W:]
            tables.append(FactoredRopeTable(rot[i, :W], rot[i, W:], ax, ay))
    return tables


def _pairs(x: torch.Tensor) -> torch.Tensor:
    """Complex view of the channel pairs of ``x`` (float32 / float64, unit stride and even strides)."""
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def can_rotate_factored(x: torch.Tensor) -> bool:
    """Whether :func:`rotate_factored_` takes ``x`` as it is: float32 / float64 with its channel pairs adjacent
    (a complex view of its memory exists)."""
    return x.dtype in (torch.float32, torch.float64) and x.stride(-1) == 1 and x.storage_offset() % 2 == 0 \
        and all(st % 2 == 0 for st in x.stride()[:-1])


def _broadcast(table: FactoredRopeTable, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ey`` and ``ex`` shaped to multiply complex pairs ``(B, H, W, *mid, heads, pairs)`` of ``ndim`` dims."""
    mid = ndim - 5
    ey = table.ey.reshape(table.ey.shape[0], *(1 for _ in range(mid + 1)), *table.ey.shape[1:])
    ex = table.ex.reshape(table.ex.shape[0], *(1 for _ in range(mid)), *table.ex.shape[1:])
    return ey, ex


def _rotate(x: torch.Tensor, table: FactoredRopeTable, inverse: bool = False) -> torch.Tensor:
    """Rotate ``x`` in place (complex-viewable, see :func:`can_rotate_factored`) by ``ey`` then ``ex`` (their
    conjugates with ``inverse``)."""
    xc = _pairs(x)
    ey, ex = _broadcast(table, xc.ndim)
    if inverse:
        ey, ex = ey.conj(), ex.conj()
    xc.mul_(ey).mul_(ex)
    return x


def _angle_sums(grad: torch.Tensor, out: torch.Tensor, shape_x: torch.Size, shape_y: torch.Size, double: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the column and row angles: the per-token angle gradient ``g1 * o0 - g0 * o1`` (d out / d angle
    is ``out`` turned by 90 degrees) summed over the batch, the middle dims and the other axis."""
    g0, g1 = grad.unflatten(-1, (-1, 2)).unbind(-1)
    o0, o1 = out.to(grad.dtype).unflatten(-1, (-1, 2)).unbind(-1)
    t = g1 * o0 - g0 * o1 if double else (g1 * o0).addcmul_(g0, o1, value=-1.0)
    t = t.sum(dim=(0, *range(3, t.ndim - 2)))  # (H, W, heads, pairs)
    return t.sum(0).reshape(shape_x), t.sum(1).reshape(shape_y)


class _RotateFactored(torch.autograd.Function):
    """:func:`rotate_factored_` with its backward written out.

    The function takes the whole buffer and the ``select`` view: autograd then records one in-place node on the
    buffer, where an in-place update of a view makes it copy the whole buffer's gradient around the update (three
    extra copies of the qkv gradient per block). The input gradient is the incoming gradient with the selected part
    turned back by ``conj(ex)`` and ``conj(ey)`` (one copy, two complex products); the angle gradients are the token
    angle gradients summed per column and per row. Differentiating the backward (``create_graph=True``) takes
    differentiable ops on the full angles, recomputed from the saved axis angles, so second derivatives are exact.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, select: Select, ex: torch.Tensor, ey: torch.Tensor, ax: torch.Tensor,
                ay: torch.Tensor) -> torch.Tensor:
        table = FactoredRopeTable(ex, ey, ax, ay)
        _rotate(select(x), table)
        ctx.mark_dirty(x)
        ctx.select = select
        ctx.learn = ctx.needs_input_grad[4] or ctx.needs_input_grad[5]
        ctx.save_for_backward(ex, ey, ax, ay, x if ctx.learn else None)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ex, ey, ax, ay, out = ctx.saved_tensors
        select = ctx.select
        double = torch.is_grad_enabled()  # the backward graph is being recorded (create_graph=True)
        grad_x = grad_ax = grad_ay = None
        g = grad.contiguous()
        if ctx.learn:
            grad_ax, grad_ay = _angle_sums(select(g), select(out), ax.shape, ay.shape, double)
        if ctx.needs_input_grad[0]:
            grad_x = g.clone()
            if double:
                angles = ay[:, None] + ax[None]  # (H, W, heads, pairs)
                part = select(g)
                angles = angles.reshape(*angles.shape[:2], *(1 for _ in range(part.ndim - 5)), *angles.shape[2:])
                select(grad_x).copy_(_rotate_autograd(part, -angles.sin(), angles.cos()))
            else:
                _rotate(select(grad_x), FactoredRopeTable(ex, ey, ax, ay), inverse=True)
        return grad_x, None, None, None, grad_ax, grad_ay


def _whole(x: torch.Tensor) -> torch.Tensor:
    return x


def rotate_factored_(x: torch.Tensor, table: FactoredRopeTable, select: Select = _whole) -> torch.Tensor:
    """Rotate the channel pairs of a grid of queries / keys in place by a :class:`FactoredRopeTable`.

    Args:
        x (Tensor): the grid ``(B, H, W, *mid, heads, head_dim)``, float32 / float64 with adjacent channel pairs
            (:func:`can_rotate_factored`); or, with ``select``, the buffer that holds it. Its unrotated values must
            not be needed by a backward pass (the output of a projection is not).
        table (FactoredRopeTable): rotations of the ``H x W`` grid.
        select (callable): the view of ``x`` to rotate, made of shape operations (view, slice, unflatten), e.g.
            ``lambda t: t.view(B, N, 3, heads, head_dim)[:, prefix:, :2].unflatten(1, (H, W))`` for the queries and
            keys of the grid tokens of a qkv projection output ``(B, N, 3 * heads * head_dim)``. Passing the whole
            buffer and this view, rather than the view, keeps autograd from copying the buffer's gradient.

    Returns:
        Tensor: ``x``, rotated. Autograd-aware: gradients reach what ``x`` was computed from and learned frequencies.
    """
    part = select(x)
    if part.ndim < 5 or tuple(part.shape[1:3]) != table.hw:
        raise ValueError(f"rotate_factored_: a table for the grid {table.hw} does not fit a grid of shape "
                         f"{tuple(part.shape)}")
    if not can_rotate_factored(part):
        raise ValueError("rotate_factored_: the grid must be float32 / float64 with adjacent channel pairs; "
                         "use FactoredRopeTable.table() and apply_rope otherwise")
    learn = table.ax.requires_grad or table.ay.requires_grad
    if torch.is_grad_enabled() and (x.requires_grad or learn):
        return _RotateFactored.apply(x, select, table.ex, table.ey, table.ax, table.ay)
    _rotate(part, table)
    return x
