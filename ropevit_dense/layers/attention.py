"""Multi-head self-attention with optional RoPE, computed by ``F.scaled_dot_product_attention``."""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..rope import BlockRopeTable, RopeTable, apply_rope
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

    def forward(
        self, x: torch.Tensor, rope: Optional[Union[RopeTable, BlockRopeTable]] = None,
        attn_mask: Optional[torch.Tensor] = None, hw: Optional[tuple[int, int]] = None,
    ) -> torch.Tensor:
        """Attend.

        Args:
            x (Tensor): ``(B, N, C)``.
            rope (RopeTable | BlockRopeTable | None): sin / cos broadcastable to ``(heads, N, head_dim // 2)``,
                or rotation blocks ``(heads or 1, N, num_blocks, b, b)``; tokens that must not rotate carry
                angle 0 (identity blocks) in it.
            attn_mask (Tensor | None): boolean (True = attend) or additive float mask broadcastable to
                ``(B, heads, N, N)``.
            hw (tuple[int, int] | None): the grid the ``N`` tokens form (row-major); needed with relative
                position tables.

        Returns:
            Tensor: ``(B, N, C)``.
        """
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = None
        if self.rel_pos_h is not None:
            if hw is None:
                raise ValueError("attention with relative position tables needs the token grid hw=(H, W)")
            # the unrotated query: the bias then depends on relative offsets only, also under RoPE
            bias = decomposed_rel_pos_bias(qkv[0], self.rel_pos_h, self.rel_pos_w, hw)
        if rope is not None:
            q, k = apply_rope(qkv[:2], rope).unbind(0)  # queries and keys in one pass
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)
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
