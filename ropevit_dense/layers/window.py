"""Window partitioning with padding, for ViTDet-style window blocks and Swin."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

WINDOW_PADDING_MODES = ("mask", "zero")


def check_window_padding(mode: str) -> None:
    """Raise ``ValueError`` naming the problem for an unknown ``window_padding``."""
    if mode not in WINDOW_PADDING_MODES:
        raise ValueError(f"unknown window_padding '{mode}'; expected 'mask' (padded tokens hidden as keys) or 'zero' "
                         "(zero tokens attend as keys, as ViTDet and Swin)")


def pad_to_multiple(x: torch.Tensor, window: int) -> torch.Tensor:
    """Zero-pad ``(B, H, W, C)`` at the bottom / right so H and W are multiples of ``window``."""
    _, H, W, _ = x.shape
    pad_h, pad_w = (-H) % window, (-W) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Split ``(B, Hp, Wp, C)`` (multiples of ``window``) into ``(B * nH * nW, window * window, C)`` windows."""
    B, Hp, Wp, C = x.shape
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nH * nW, window * window, C)`` → ``(B, Hp, Wp, C)``."""
    Hp, Wp = padded_hw
    C = windows.shape[-1]
    x = windows.view(-1, Hp // window, Wp // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)


def valid_windows(
    hw: tuple[int, int], window: int, shift: int = 0, device: Optional[torch.device] = None
) -> torch.Tensor:
    """Which tokens of each window are real (not padding) for an ``hw`` map padded to ``window`` multiples.

    Args:
        hw: the unpadded map size ``(H, W)``.
        window: window side.
        shift: cyclic shift applied to the padded map before partitioning (Swin's shifted windows).

    Returns:
        Tensor: bool ``(nH * nW, window * window)``.
    """
    H, W = hw
    Hp, Wp = H + (-H) % window, W + (-W) % window
    valid = torch.zeros(1, Hp, Wp, 1, dtype=torch.bool, device=device)
    valid[:, :H, :W] = True
    if shift:
        valid = torch.roll(valid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(valid, window).squeeze(-1)


def padding_key_mask(
    hw: tuple[int, int], window: int, batch: int, device: Optional[torch.device] = None
) -> Optional[torch.Tensor]:
    """Boolean mask that hides zero-padded tokens as keys, or ``None`` when nothing was padded.

    Returns:
        Tensor | None: ``(batch * nH * nW, 1, 1, window * window)``; True where the key is a real token.
    """
    H, W = hw
    if H % window == 0 and W % window == 0:
        return None
    return valid_windows(hw, window, device=device).repeat(batch, 1)[:, None, None, :]
