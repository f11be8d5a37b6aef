"""Decomposed relative position bias of ViTDet (Li et al., ECCV 2022; from MViTv2, Li et al., CVPR 2022).

Each attention layer learns two tables, ``rel_pos_h`` ``(2 * H_ref - 1, head_dim)`` and ``rel_pos_w``
``(2 * W_ref - 1, head_dim)``, one row per relative offset along an axis. A query at ``(qy, qx)`` adds
``q . rel_pos_h[qy - ky + H - 1] + q . rel_pos_w[qx - kx + W - 1]`` to its logit for the key at ``(ky, kx)``, with the
unscaled query (the dot products are not divided by ``sqrt(head_dim)``). A grid of another size uses the tables
linearly resampled to ``2 * H - 1`` rows. The names and the zero initialisation follow detectron2's ViT, so its
checkpoints and those of models fine-tuned from it load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resampling of a ``(L, C)`` relative position table to ``(length, C)`` (``align_corners=False``)."""
    if table.shape[0] == length:
        return table
    dtype = torch.promote_types(table.dtype, torch.float32)
    resized = F.interpolate(table.to(dtype).T.unsqueeze(0), size=length, mode="linear", align_corners=False)
    return resized.squeeze(0).T.to(table.dtype)


def _axis_embeddings(table: torch.Tensor, size: int) -> torch.Tensor:
    """``(size, size, C)``: row ``[i, j]`` is the table entry of offset ``i - j``."""
    table = resize_rel_pos(table, 2 * size - 1)
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + (size - 1)]


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            hw: tuple[int, int]) -> torch.Tensor:
    """Additive attention bias of the decomposed relative positions, for queries and keys on the same grid.

    Args:
        q (Tensor): unscaled queries ``(B, heads, H * W, head_dim)``, row-major over the grid.
        rel_pos_h (Tensor): ``(L_h, head_dim)`` table of vertical offsets.
        rel_pos_w (Tensor): ``(L_w, head_dim)`` table of horizontal offsets.
        hw (tuple[int, int]): the grid ``(H, W)``.

    Returns:
        Tensor: ``(B, heads, H * W, H * W)`` in ``q``'s dtype.
    """
    H, W = hw
    B, heads, N, C = q.shape
    if N != H * W:
        raise ValueError(f"decomposed relative position: {N} queries do not form the {H}x{W} grid")
    r_q = q.reshape(B, heads, H, W, C)
    rh = _axis_embeddings(rel_pos_h.to(q.dtype), H)  # (H, H, C): query row, key row
    rw = _axis_embeddings(rel_pos_w.to(q.dtype), W)  # (W, W, C): query column, key column
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)  # (B, heads, H, W, H_k)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)  # (B, heads, H, W, W_k)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, N, N)
