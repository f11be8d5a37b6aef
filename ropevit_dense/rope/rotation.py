"""The one rotation of the package: real-valued 2D RoPE on interleaved channel pairs.

Every position encoding here reduces to a rotation of channel pairs ``(2j, 2j+1)`` of each head by an angle

    theta[h, n, j] = x_n * fx[h, j] + y_n * fy[h, j]

where ``(x_n, y_n)`` is the position of token ``n`` and ``(fx, fy)`` are the frequencies of head ``h``:

    [x0 x1 x2 x3 ...] -> [x0 cos t0 - x1 sin t0,  x0 sin t0 + x1 cos t0,  x2 cos t1 - x3 sin t1, ...]

which is the complex product ``(x0 + i x1) * exp(i t0)`` of the naver reference. Parameters are real, and so are
the tables that traced code (``torch.compile``, ``torch.export`` / ONNX) builds and reads; in eager mode a table is
built as the complex ``cos + i sin`` in one buffer (``sin`` / ``cos`` are views of it), and the float32 kernels
multiply it into a complex view of the queries' and keys' own memory. Axial RoPE is the
special case where the first half of the pairs carries x frequencies only and the second half y frequencies only;
RoPE-Mixed learns both.

Position modes whose rotations mix more than two channels (Spherical RoPE, LieRE, ComRoPE with blocks of size
``b > 2``) hand a :class:`BlockRopeTable` instead: one orthogonal ``b x b`` block per (head, token, channel block),
applied to consecutive channel blocks ``[b*j, b*j + b)`` of each head (channels past the last whole block are left
as they are). Their 2x2 cases are exactly the sin / cos rotation above and are built as :class:`RopeTable`, so
:func:`apply_rope` is the one entry point for every mode.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch

from .grid import Coords, GridCoords, flat_coords


class RopeTable(NamedTuple):
    """sin / cos of the rotation angles, each ``(heads or 1, N, head_dim // 2)`` in float32.

    ``angles`` is set when the angles are learned (RoPE-Mixed): gradients then flow to them directly (see
    :class:`_Rotate`), and ``sin`` / ``cos`` are plain values.

    ``rotation`` (complex ``cos + i sin``, optional) is the same table as the eager kernels read it; when it is set,
    ``sin`` and ``cos`` are its imaginary and real views. Traced code builds tables without it.

    ``basis`` (``(heads, num_blocks, b, b)``, orthogonal, optional) is a change of basis applied to consecutive
    channel blocks of every token before the pair rotation: rotations ``Q R(theta) Q^T`` that share ``Q`` across
    tokens (ComRoPE's commuting generators in their common eigenbasis) become ``Q^T`` then the sin / cos rotation.
    The output is then expressed in that basis; as queries and keys share it, their dot products are those of the
    full rotation ``Q R Q^T``.
    """

    sin: torch.Tensor
    cos: torch.Tensor
    angles: Optional[torch.Tensor] = None
    basis: Optional[torch.Tensor] = None
    rotation: Optional[torch.Tensor] = None

    def with_prefix(self, num_prefix: int) -> RopeTable:
        """Prepend ``num_prefix`` identity rows (angle 0) for tokens that must not rotate (cls / registers)."""
        if num_prefix == 0:
            return self
        shape = (*self.sin.shape[:-2], num_prefix, self.sin.shape[-1])
        zeros = self.sin.new_zeros(shape)
        angles = None if self.angles is None else torch.cat((zeros.to(self.angles.dtype), self.angles), dim=-2)
        # with a basis, the prefix rows are Q R(0) Q^T = identity as well: only dot products are defined
        if self.rotation is not None:
            rot = torch.cat((torch.ones(shape, dtype=self.rotation.dtype, device=zeros.device), self.rotation), dim=-2)
            return RopeTable(rot.imag, rot.real, angles, self.basis, rot)
        return RopeTable(torch.cat((zeros, self.sin), dim=-2), torch.cat((zeros + 1.0, self.cos), dim=-2), angles,
                         self.basis)


class BlockRopeTable(NamedTuple):
    """Orthogonal rotation blocks ``(heads or 1, N, num_blocks, b, b)``, float32 (float64 for float64 generators).

    Block ``[h, n, j]`` rotates channels ``[b*j, b*j + b)`` of head ``h`` at token ``n``: ``out = R @ x`` on that
    slice. The blocks carry their own autograd graph (built by differentiable ops, e.g.
    :func:`~ropevit_dense.rope.expm.expm_linear`), so gradients reach the generators they were computed from. ``b`` is
    at least 3: 2x2 rotations are :class:`RopeTable` (see :func:`ropevit_dense.rope.generators.generator_table`).
    """

    blocks: torch.Tensor

    def with_prefix(self, num_prefix: int) -> BlockRopeTable:
        """Prepend ``num_prefix`` identity blocks for tokens that must not rotate (cls / registers)."""
        if num_prefix == 0:
            return self
        b = self.blocks
        eye = torch.eye(b.shape[-1], dtype=b.dtype, device=b.device)
        ident = eye.expand(b.shape[0], num_prefix, b.shape[2], -1, -1)
        return BlockRopeTable(torch.cat((ident, b), dim=1))


def rope_angles(freqs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Rotation angles of every (head, token, pair).

    Args:
        freqs (Tensor): ``(2, heads, head_dim // 2)``: x frequencies then y frequencies.
        coords (Tensor): ``(N, 2)`` token positions ``(x, y)``.

    Returns:
        Tensor: ``(heads, N, head_dim // 2)`` float32 (float64 if ``freqs`` is).
    """
    # Elementwise products in float32: a matmul here would be downcast by autocast, and angles of thousands of
    # radians lose their low bits in bf16.
    dtype = torch.promote_types(freqs.dtype, torch.float32)
    freqs, coords = freqs.to(dtype), coords.to(dtype)
    x, y = coords[None, :, 0, None], coords[None, :, 1, None]
    return torch.addcmul(x * freqs[0, :, None, :], y, freqs[1, :, None, :])


def rope_table(freqs: torch.Tensor, coords: Coords) -> RopeTable:
    """sin / cos table for :func:`apply_rope` (see :func:`rope_angles` for shapes); in eager mode built as the
    complex rotation ``cos + i sin`` (``sin`` / ``cos`` its views, see :class:`RopeTable`).

    For a grid's :class:`~ropevit_dense.rope.grid.GridCoords` the eager table is the product of one rotation per
    column and one per row, ``exp(i x fx) * exp(i y fy)``: sin / cos on ``W + H`` positions and one complex product
    per entry, instead of the angles, sin and cos of all ``W * H`` tokens.
    """
    traced = torch.compiler.is_compiling()
    with torch.autocast(device_type=freqs.device.type, enabled=False):
        if isinstance(coords, GridCoords) and not traced:
            return _grid_table(freqs, coords)
        angles = rope_angles(freqs, flat_coords(coords))
        learned = angles if angles.requires_grad else None
        values = angles.detach()
        if traced:
            return RopeTable(values.sin(), values.cos(), learned)
        # cos and sin written straight into the parts of one complex buffer: one allocation, no assembly pass
        rot = torch.empty(values.shape, dtype=values.dtype.to_complex(), device=values.device)
        parts = torch.view_as_real(rot)
        torch.cos(values, out=parts[..., 0])
        torch.sin(values, out=parts[..., 1])
        return RopeTable(rot.imag, rot.real, learned, None, rot)


def _grid_table(freqs: torch.Tensor, grid: GridCoords) -> RopeTable:
    """:func:`rope_table` of a grid, factored by axis (autocast off)."""
    dtype = torch.promote_types(freqs.dtype, torch.float32)
    freqs = freqs.to(dtype)
    ax = grid.xs.to(dtype)[None, :, None] * freqs[0, :, None, :]  # (heads, W, pairs)
    ay = grid.ys.to(dtype)[None, :, None] * freqs[1, :, None, :]  # (heads, H, pairs)
    ex, ey = (torch.complex(a.detach().cos(), a.detach().sin()) for a in (ax, ay))
    rot = (ey[:, :, None] * ex[:, None]).flatten(1, 2)  # (heads, H * W, pairs), row-major like the tokens
    # learned frequencies: the angles, for the gradient (the rotation's backward reads them, see _Rotate)
    angles = (ay[:, :, None] + ax[:, None]).flatten(1, 2) if ax.requires_grad or ay.requires_grad else None
    return RopeTable(rot.imag, rot.real, angles, None, rot)


def _complex_pairs(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x``'s channel pairs as a complex view of the same memory, or None where the layout or dtype has none.

    The eager kernels multiply through this view: ``(x0 + i x1) * (cos + i sin)`` is exactly the pair rotation
    (the same products and sums), done by one vectorised pass where the real form needs several strided passes
    over every other channel. Tables and parameters stay real; traced code (:func:`apply_rope` under
    ``torch.compile`` / ``torch.export``) takes the real expression.
    """
    if x.dtype not in (torch.float32, torch.float64) or x.stride(-1) != 1 or x.storage_offset() % 2 \
            or any(st % 2 for st in x.stride()[:-1]):
        return None
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def _rotation(sin: torch.Tensor, cos: torch.Tensor, dtype: torch.dtype, rot: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
    """``cos + i sin``: the table's own complex form ``rot`` where it has one, else assembled in the complex dtype
    matching ``dtype``."""
    return rot if rot is not None else torch.complex(cos.to(dtype), sin.to(dtype))


def _rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, rot: Optional[torch.Tensor] = None
            ) -> torch.Tensor:
    """Rotate pairs of ``x`` (float32 / float64) into a new buffer, pair-wise, without stack or cat copies."""
    xc = _complex_pairs(x)
    if xc is not None:
        return torch.view_as_real(xc * _rotation(sin, cos, x.dtype, rot)).flatten(-2)
    x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.empty((*x0.shape, 2), dtype=x0.dtype, device=x0.device)
    out0, out1 = out.unbind(-1)
    torch.mul(x0, cos, out=out0).addcmul_(x1, sin, value=-1.0)
    torch.mul(x1, cos, out=out1).addcmul_(x0, sin)
    return out.flatten(-2)


def _rotate_autograd(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """The same rotation from differentiable ops only (no ``out=``), for backward passes that are themselves
    differentiated (``create_graph=True``)."""
    x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2)


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    lead = t.ndim - len(shape)
    dims = list(range(lead)) + [lead + i for i, n in enumerate(shape) if n == 1 and t.shape[lead + i] != 1]
    return t.sum(dim=dims, keepdim=True).reshape(shape) if dims else t


def _save(ctx, sin: torch.Tensor, cos: torch.Tensor, out: torch.Tensor, angles: Optional[torch.Tensor]) -> None:
    """What the rotations' backward needs: learned angles (sin / cos are recomputed from them, which also keeps
    second derivatives exact) and the rotated output, or the fixed sin / cos table (shared, no copy)."""
    ctx.angle_shape = None if angles is None else angles.shape
    if ctx.needs_input_grad[3]:
        ctx.save_for_backward(out, angles)
    else:
        ctx.save_for_backward(sin, cos)


def _saved(ctx) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(sin, cos, out, angles)`` of :func:`_save` (``out`` and ``angles`` None for fixed tables)."""
    if ctx.needs_input_grad[3]:
        out, angles = ctx.saved_tensors
        return angles.sin(), angles.cos(), out, angles
    sin, cos = ctx.saved_tensors
    return sin, cos, None, None


class _Rotate(torch.autograd.Function):
    """The rotation with a hand-written backward.

    The backward of a rotation is the rotation by the opposite angle, and the angle gradient is
    ``sum(g1 * out0 - g0 * out1)`` per pair (d out / d angle is ``out`` turned by 90 degrees): two products
    instead of autograd replaying the elementwise formula through sin and cos.

    Differentiating the backward itself (``torch.autograd.grad(..., create_graph=True)``, e.g. gradient penalties or
    meta-learning) takes a slower path of differentiable ops: sin / cos are recomputed from the saved angles and the
    saved output stays connected to this node, so second derivatives are exact.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, angles: Optional[torch.Tensor],
                rot: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = _rotate(x, sin, cos, rot)
        _save(ctx, sin, cos, out, angles)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        sin, cos, out, angles = _saved(ctx)
        double = torch.is_grad_enabled()  # the backward graph is being recorded (create_graph=True)
        grad_x = grad_angles = None
        if ctx.needs_input_grad[0]:
            grad_x = _rotate_autograd(grad, -sin, cos) if double else _rotate(grad, -sin, cos)
        if out is not None:
            g0, g1 = grad.unflatten(-1, (-1, 2)).unbind(-1)
            o0, o1 = out.unflatten(-1, (-1, 2)).unbind(-1)
            grad_angles = _sum_to(g1 * o0 - g0 * o1 if double else torch.addcmul(g1 * o0, g0, o1, value=-1.0),
                                  ctx.angle_shape)
        return grad_x, None, None, grad_angles, None


def _rotate_in_place(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, rot: Optional[torch.Tensor] = None
                     ) -> None:
    """Rotate the pairs of ``x`` (any strides) in place; half-precision storage is computed in float32 and rounded
    once, as the out-of-place path does."""
    xc = _complex_pairs(x)
    if xc is not None:
        xc.mul_(_rotation(sin, cos, x.dtype, rot))
        return
    x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
    if x.dtype in (torch.float32, torch.float64):
        t0 = x0.clone()  # the only temporary: half of x
        x0.mul_(cos).addcmul_(x1, sin, value=-1.0)
        x1.mul_(cos).addcmul_(t0, sin)
    else:
        f0, f1 = x0.float(), x1.float()
        x0.copy_(torch.addcmul(f0 * cos, f1, sin, value=-1.0))
        x1.copy_(torch.addcmul(f1 * cos, f0, sin))


Select = Callable[[torch.Tensor], torch.Tensor]
"""A view function: the part of a buffer that an in-place rotation rotates, e.g. the queries and keys of the grid
tokens inside a fused qkv projection output. Built from shape operations only, so it selects the same part of any
contiguous tensor of the buffer's shape (its gradient)."""


class _RotateInPlace(torch.autograd.Function):
    """:class:`_Rotate` done in place, e.g. on queries and keys inside the fused qkv buffer.

    The buffer is the output of the qkv projection, whose backward does not need it, so rotating it in place is safe
    and saves the separate copy of the rotated queries and keys that attention's backward would otherwise keep
    (with learned angles, the rotated values saved for their gradient are the buffer itself). Gradients are those
    of :class:`_Rotate`, computed in float32. With ``select``, ``x`` is the whole buffer and ``select(x)`` the part
    rotated: autograd then records one in-place node on the buffer instead of copying the buffer's gradient around
    an in-place update of a view.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, angles: Optional[torch.Tensor],
                rot: Optional[torch.Tensor] = None, select: Optional[Select] = None
                ) -> torch.Tensor:
        _rotate_in_place(x if select is None else select(x), sin, cos, rot)
        ctx.mark_dirty(x)
        ctx.select = select
        _save(ctx, sin, cos, x, angles)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        sin, cos, out, angles = _saved(ctx)
        select = ctx.select
        double = torch.is_grad_enabled()
        g = grad.to(torch.promote_types(grad.dtype, torch.float32))
        if select is not None:
            g = g.contiguous()
            out = None if out is None else select(out)
        part = g if select is None else select(g)
        grad_x = grad_angles = None
        if ctx.needs_input_grad[0]:
            if select is None:
                grad_x = (_rotate_autograd(part, -sin, cos) if double else _rotate(part, -sin, cos)).to(grad.dtype)
            else:  # the rest of the buffer's gradient passes as it is
                grad_x = g.clone()
                if double:
                    select(grad_x).copy_(_rotate_autograd(part, -sin, cos))
                else:
                    _rotate_in_place(select(grad_x), -sin, cos)
                grad_x = grad_x.to(grad.dtype)
        if out is not None:
            g0, g1 = part.unflatten(-1, (-1, 2)).unbind(-1)
            o0, o1 = out.to(g.dtype).unflatten(-1, (-1, 2)).unbind(-1)
            grad_angles = _sum_to(g1 * o0 - g0 * o1 if double else torch.addcmul(g1 * o0, g0, o1, value=-1.0),
                                  ctx.angle_shape)
        return grad_x, None, None, grad_angles, None, None


def _change_basis(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``Q^T`` of every channel block: ``x`` ``(..., heads, N, nb * b)``, ``basis`` ``(heads, nb, b, b)``."""
    nb, b = basis.shape[-3], basis.shape[-1]
    if nb * b != x.shape[-1]:
        raise ValueError(f"apply_rope: a basis of {nb} blocks of {b} channels does not fit head_dim={x.shape[-1]}")
    with torch.autocast(device_type=x.device.type, enabled=False):  # a product autocast would run in bf16
        # as one (head_dim x head_dim) block-diagonal matrix per head: a plain batched matmul that writes the output
        # in x's layout, 1.5-1.8x faster on CPU than the per-block product (which permutes x and its result)
        eye = torch.eye(nb, dtype=x.dtype, device=x.device)
        dense = torch.einsum("hkij,kl->hkilj", basis.to(x.dtype), eye).reshape(basis.shape[0], nb * b, nb * b)
        return torch.matmul(x, dense.transpose(-1, -2))


def _rotate_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``R @ x`` per channel block of ``x`` (float32 / float64), channels past the last whole block unchanged."""
    num_blocks, b = blocks.shape[-3], blocks.shape[-1]
    width = num_blocks * b
    if width > x.shape[-1]:
        raise ValueError(f"apply_rope: {num_blocks} blocks of {b} channels do not fit head_dim={x.shape[-1]}")
    # A batched product over (head, token, block) with the queries and keys of every image as the rows of each
    # product (x R^T): no dense head_dim x head_dim matrix and no copy of the table per image. The rows are gathered
    # as whole b-channel runs; an einsum over the same indices moved single channels (b-strided copies), 1.3-2x
    # slower for a batch of 1. Autocast is off so the product stays in x's dtype.
    xb = x[..., :width].unflatten(-1, (num_blocks, b))  # (..., heads, N, nb, b)
    heads, n = xb.shape[-4], xb.shape[-3]
    flat = xb.reshape(-1, heads, n, num_blocks, b)  # (L, heads, N, nb, b)
    lead = flat.shape[0]
    if blocks.shape[0] == 1 and heads > 1:  # one table for every head: the heads join the rows
        rows = flat.permute(2, 3, 0, 1, 4).reshape(1, n, num_blocks, lead * heads, b)
    else:
        rows = flat.permute(1, 2, 3, 0, 4)  # (heads, N, nb, L, b)
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = torch.matmul(rows, blocks.to(x.dtype).transpose(-1, -2))
    if blocks.shape[0] == 1 and heads > 1:
        out = out.view(n, num_blocks, lead, heads, b).permute(2, 3, 0, 1, 4)
    else:
        out = out.permute(3, 0, 1, 2, 4)
    out = out.reshape(*xb.shape[:-2], width)
    return out if width == x.shape[-1] else torch.cat((out, x[..., width:]), dim=-1)


def apply_rope(x: torch.Tensor, table: Union[RopeTable, BlockRopeTable]) -> torch.Tensor:
    """Rotate interleaved channel pairs (or channel blocks) of ``x``.

    Args:
        x (Tensor): ``(..., heads, N, head_dim)``, e.g. stacked queries and keys ``(2, B, heads, N, head_dim)``.
        table (RopeTable | BlockRopeTable): sin / cos broadcastable to ``(heads, N, head_dim // 2)`` (with an
            optional shared basis, see :class:`RopeTable`), or rotation blocks ``(heads or 1, N, num_blocks, b, b)``.

    Returns:
        Tensor: same shape and dtype as ``x``; the rotation itself runs in float32 (or float64 for float64).
    """
    dtype = x.dtype
    if isinstance(table, BlockRopeTable):
        if table.blocks.shape[-1] < 3:
            raise ValueError("apply_rope: 2x2 rotations go through RopeTable (the sin / cos path), "
                             "build them with rope_table / generator_table")
        return _rotate_blocks(x.to(torch.promote_types(dtype, torch.float32)), table.blocks).to(dtype)
    sin, cos, angles, basis, rot = table
    if sin.requires_grad or cos.requires_grad:
        raise ValueError("apply_rope: gradients reach the table through RopeTable.angles, not sin / cos "
                         "(build tables with rope_table)")
    xf = x.to(torch.promote_types(dtype, torch.float32))
    if basis is not None:
        xf = _change_basis(xf, basis)
    learn_angles = angles is not None and angles.requires_grad
    if torch.compiler.is_compiling():
        # Traced (torch.compile, torch.export): one out-of-place expression that the compiler fuses itself and
        # differentiates itself; the eager kernels below write into views of a fresh buffer (``out=``), which
        # dynamo cannot trace (a graph break per rotation, and no symbolic shapes with dynamic=True).
        if learn_angles:
            sin, cos = angles.sin(), angles.cos()
        return _rotate_autograd(xf, sin, cos).to(dtype)
    if torch.is_grad_enabled() and (x.requires_grad or learn_angles):
        return _Rotate.apply(xf, sin, cos, angles if learn_angles else None, rot).to(dtype)
    return _rotate(xf, sin, cos, rot).to(dtype)


def apply_rope_(x: torch.Tensor, table: RopeTable, select: Optional[Select] = None
                ) -> torch.Tensor:
    """:func:`apply_rope` in place, for sin / cos tables without a basis (axial, RoPE-Mixed, their 2x2 relatives).

    Args:
        x (Tensor): ``(..., heads, N, head_dim)``, any strided view, e.g. the queries and keys of a fused
            ``(3, B, heads, N, head_dim)`` qkv view; or, with ``select``, the buffer that holds them. It must not be
            needed by a backward pass in its unrotated form (it is the output of the projection in attention).
        table (RopeTable): the rotations.
        select (callable | None): the view of ``x`` to rotate, made of shape operations (view, permute, slice), e.g.
            ``lambda t: t.view(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4)[:2, :, :, prefix:]`` for a qkv
            projection output ``(B, N, 3 * heads * head_dim)``. Handing over the whole buffer and this view keeps
            autograd from copying the buffer's gradient around the in-place update.

    Returns:
        Tensor: ``x``, rotated. Autograd-aware: gradients reach what ``x`` was computed from and the table's learned
        angles.
    """
    if isinstance(table, BlockRopeTable) or table.basis is not None:
        raise ValueError("apply_rope_: only sin / cos tables without a basis rotate in place; use apply_rope")
    sin, cos, angles, _, rot = table
    if sin.requires_grad or cos.requires_grad:
        raise ValueError("apply_rope_: gradients reach the table through RopeTable.angles, not sin / cos "
                         "(build tables with rope_table)")
    learn_angles = angles is not None and angles.requires_grad
    if torch.is_grad_enabled() and (x.requires_grad or learn_angles):
        return _RotateInPlace.apply(x, sin, cos, angles if learn_angles else None, rot, select)
    _rotate_in_place(x if select is None else select(x), sin, cos, rot)
    return x
