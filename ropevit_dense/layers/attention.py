"""Multi-head self-attention with optional RoPE, computed by ``F.scaled_dot_product_attention``."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..rope import BlockRopeTable, FactoredRopeTable, RopeArg, RopeTable, apply_rope, apply_rope_
from ..rope.factored import rotate_factored_
from .rel_pos import decomposed_rel_pos_bias


class Attention(nn.Module):
    """Self-attention over ``(B, N, C)`` tokens.

    Args:
        dim (int): channels.
        num_heads (int): heads; ``dim`` must be divisible by it.
        qkv_bias (bool): bias of the fused qkv projection. Default: True.
        attn_drop (float): attention dropout (training only). Default: 0.
        proj_drop (float): output dropout. Default: 0.
        rel_pos_size (tuple[int, int] | None): grid ``(H, W)`` the decomposed relative position tables
            (``rel_pos_h`` / ``rel_pos_w``, ViTDet, :mod:`ropevit_dense.layers.rel_pos`) are sized for;
            zero-initialised. None for none. Default: None.
    """

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
        rel_pos_size: Optional[tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if rel_pos_size is not None:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, self.head_dim))
        else:
            self.rel_pos_h = self.rel_pos_w = None

    def project(self, x: torch.Tensor, rope: Optional[RopeArg] = None,
                hw: Optional[tuple[int, int]] = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Queries and keys rotated by ``rope``, values, and the relative position bias (or None).

        The table covers the last ``rows`` tokens; the first ``N - rows`` (cls / register tokens) are not rotated.
        Pair tables rotate the queries and keys in place inside the fused qkv projection output, so attention gets
        the same strided views as without RoPE and no rotated copy is kept for the backward pass.

        Returns:
            tuple: ``q``, ``k``, ``v`` ``(B, heads, N, head_dim)`` and the bias ``(B, heads, N, N)`` or None.
        """
        B, N, _ = x.shape
        # (B * N, 3 * heads * head_dim), token-major. Projected from the flattened tokens, the buffer is the matmul's
        # own output rather than a view of it, so autograd records an in-place rotation of it as one node (of a view,
        # it would copy the whole buffer's gradient around the update, three times per block).
        buf = self.qkv(x.reshape(B * N, -1))

        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, N, 3, heads, head_dim)
            return t.view(B, N, 3, self.num_heads, self.head_dim)

        def split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # q, k, v (B, heads, N, hd)
            return tokens(t).permute(2, 0, 3, 1, 4).unbind(0)

        bias = None
        if self.rel_pos_h is not None:
            if hw is None:
                raise ValueError("attention with relative position tables needs the token grid hw=(H, W)")
            # the unrotated query: the bias then depends on relative offsets only, also under RoPE
            bias = decomposed_rel_pos_bias(split(buf)[0], self.rel_pos_h, self.rel_pos_w, hw)
        if rope is None:
            return (*split(buf), bias)
        if callable(rope):
            rope = rope()
        if isinstance(rope, FactoredRopeTable):
            rows = rope.hw[0] * rope.hw[1]
        else:
            rows = rope.blocks.shape[-4] if isinstance(rope, BlockRopeTable) else rope.sin.shape[-2]
        prefix = N - rows
        if prefix < 0:
            raise ValueError(f"a RoPE table of {rows} positions for {N} tokens")
        # In place in eager mode, on the whole buffer with the rotated part selected in it (one autograd node, no
        # copies of the buffer's gradient); traced (torch.compile, torch.export / ONNX) the functional form, which
        # the compilers fuse themselves. With a bias, its backward needs the unrotated queries, so no in-place.
        in_place = bias is None and not torch.compiler.is_compiling()
        if isinstance(rope, FactoredRopeTable):
            hw_ = rope.hw

            def grid(t: torch.Tensor) -> torch.Tensor:  # the grid's q and k, token-major (B, H, W, 2, heads, hd)
                return tokens(t)[:, prefix:, :2].unflatten(1, hw_)

            if in_place and buf.dtype in (torch.float32, torch.float64):  # the projection's buffer: pairs adjacent
                return (*split(rotate_factored_(buf, rope, grid)), bias)
            rope = rope.table()
        if isinstance(rope, RopeTable) and rope.basis is None and in_place:
            def heads(t: torch.Tensor) -> torch.Tensor:  # the grid's q and k, head-major (2, B, heads, rows, hd)
                return tokens(t).permute(2, 0, 3, 1, 4)[:2, :, :, prefix:]

            return (*split(apply_rope_(buf, rope, heads)), bias)
        qkv = tokens(buf).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], rope.with_prefix(prefix)).unbind(0)
        return q, k, qkv[2], bias

    def forward(
        self, x: torch.Tensor, rope: Optional[RopeArg] = None,
        attn_mask: Optional[torch.Tensor] = None, hw: Optional[tuple[int, int]] = None,
    ) -> torch.Tensor:
        """Attend.

        Args:
            x (Tensor): ``(B, N, C)``.
            rope (RopeArg | None): sin / cos broadcastable to ``(heads, rows, head_dim // 2)``, or rotation blocks
                ``(heads or 1, rows, num_blocks, b, b)``, for the last ``rows`` tokens (the first ``N - rows``,
                cls / registers, are not rotated); or a callable building such a table.
            attn_mask (Tensor | None): boolean (True = attend) or additive float mask broadcastable to
                ``(B, heads, N, N)``.
            hw (tuple[int, int] | None): the grid the ``N`` tokens form (row-major); needed with relative
                position tables.

        Returns:
            Tensor: ``(B, N, C)``.
        """
        B, N, C = x.shape
        q, k, v, bias = self.project(x, rope, hw)
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(q.dtype)
        if bias is not None:
            if attn_mask is None:
                attn_mask = bias
            elif attn_mask.dtype == torch.bool:
                attn_mask = bias.masked_fill(~attn_mask, float("-inf"))
            else:
                attn_mask = bias + attn_mask
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))
