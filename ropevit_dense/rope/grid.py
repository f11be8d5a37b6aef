"""Token coordinates for 2D RoPE.

Positions are ``(x, y)`` pairs in row-major token order with x varying fastest (token ``n`` sits at
``x = n % W``, ``y = n // W``), the order of a flattened ``(H, W)`` feature map and of the naver RoPE-ViT code.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

PositionMode = Literal["extrapolate", "interpolate"]
POSITION_MODES = ("extrapolate", "interpolate")


def grid_coords(
    height: int,
    width: int,
    *,
    mode: PositionMode = "extrapolate",
    ref_size: Optional[tuple[float, float]] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Coordinates of every token of an ``height x width`` grid.

    Args:
        height (int): grid rows.
        width (int): grid columns.
        mode (str): ``'extrapolate'`` (default) uses the integer token coordinates ``0..W-1`` / ``0..H-1`` of the
            actual grid, so a larger input sees positions beyond the pretraining range (RoPE-ViT's choice).
            ``'interpolate'`` maps the grid onto ``ref_size`` (EVA-02 style): ``x * ref_w / W``.
        ref_size (tuple[float, float] | None): reference grid ``(ref_h, ref_w)``; required for ``'interpolate'``.
        device: device of the result.

    Returns:
        Tensor: ``(height * width, 2)`` float32, columns ``(x, y)``, x fastest.
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid must be at least 1x1, got {height}x{width}")
    if mode not in POSITION_MODES:
        raise ValueError(f"unknown RoPE position mode '{mode}'; expected one of {POSITION_MODES}")
    xs = torch.arange(width, dtype=torch.float32, device=device)
    ys = torch.arange(height, dtype=torch.float32, device=device)
    if mode == "interpolate":
        if ref_size is None:
            raise ValueError("RoPE position mode 'interpolate' needs ref_size=(ref_h, ref_w)")
        xs = xs * (ref_size[1] / width)
        ys = ys * (ref_size[0] / height)
    # y of every token by broadcasting, not repeat_interleave: torch.onnx (dynamo) mistranslates
    # repeat_interleave with a symbolic count, so the exported grid would be wrong for dynamic H / W
    return torch.stack((xs.repeat(height), ys[:, None].expand(height, width).reshape(-1)), dim=-1)
