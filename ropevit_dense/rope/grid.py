"""Token coordinates for 2D RoPE.

Positions are ``(x, y)`` pairs in row-major token order with x varying fastest (token ``n`` sits at
``x = n % W``, ``y = n // W``), the order of a flattened ``(H, W)`` feature map and of the naver RoPE-ViT code.

Two coordinate rules (``rule``), each under two position conventions (``mode``):

* ``'index'`` (RoPE-ViT, EVA-02): token indices ``0..W-1``; ``'interpolate'`` maps them onto a reference grid
  (``x * ref_w / W``, EVA-02's rule).
* ``'centered'`` (DINOv3, Simeoni et al. 2025): token centres measured from the middle of the grid, in units of half
  its side, so ``'interpolate'`` spans ``[-1, 1]`` per axis whatever the grid size (DINOv3's own rule); with
  ``'extrapolate'`` the unit is half the reference grid's side, so larger grids reach past ``[-1, 1]`` with the
  step of the reference grid.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Optional, Union

import torch

PositionMode = Literal["extrapolate", "interpolate"]
POSITION_MODES = ("extrapolate", "interpolate")
CoordinateRule = Literal["index", "centered"]
COORDINATE_RULES = ("index", "centered")


class GridCoords(NamedTuple):
    """The coordinates of a row-major grid by axis: token ``n`` sits at ``(xs[n % W], ys[n // W])``.

    The RoPE modules take it wherever they take ``(N, 2)`` coordinates. Pair tables (axial, RoPE-Mixed, ComRoPE)
    use the structure: ``exp(i (x fx + y fy)) = exp(i x fx) exp(i y fy)``, so sin / cos are evaluated on ``W + H``
    positions instead of ``W * H`` (:func:`~ropevit_dense.rope.rotation.rope_table`); the other modes flatten it.
    """

    xs: torch.Tensor
    ys: torch.Tensor

    def flat(self) -> torch.Tensor:
        """``(H * W, 2)`` coordinates ``(x, y)``, x fastest (:func:`grid_coords`)."""
        height, width = self.ys.shape[0], self.xs.shape[0]
        # y of every token by broadcasting, not repeat_interleave: torch.onnx (dynamo) mistranslates
        # repeat_interleave with a symbolic count, so the exported grid would be wrong for dynamic H / W
        return torch.stack((self.xs.repeat(height), self.ys[:, None].expand(height, width).reshape(-1)), dim=-1)


Coords = Union[torch.Tensor, GridCoords]
"""What RoPE modules take: ``(N, 2)`` token coordinates, or a grid's :class:`GridCoords`."""


def flat_coords(coords: Coords) -> torch.Tensor:
    """``(N, 2)`` coordinates of either form."""
    return coords.flat() if isinstance(coords, GridCoords) else coords


def grid_coords(
    height: int,
    width: int,
    *,
    mode: PositionMode = "extrapolate",
    ref_size: Optional[tuple[float, float]] = None,
    rule: CoordinateRule = "index",
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Coordinates of every token of an ``height x width`` grid (:func:`grid_axes`, flattened).

    Args:
        height (int): grid rows.
        width (int): grid columns.
        mode (str): ``'extrapolate'`` (default) uses the integer token coordinates ``0..W-1`` / ``0..H-1`` of the
            actual grid, so a larger input sees positions beyond the pretraining range (RoPE-ViT's choice).
            ``'interpolate'`` maps the grid onto ``ref_size`` (EVA-02 style): ``x * ref_w / W``.
        ref_size (tuple[float, float] | None): reference grid ``(ref_h, ref_w)``; required for ``'interpolate'``
            with ``rule='index'`` and for ``'extrapolate'`` with ``rule='centered'``.
        rule (str): ``'index'`` (default) or ``'centered'`` (see the module docstring): with ``'centered'``,
            ``x = (2 * i + 1 - W) / S`` where ``S`` is ``W`` for ``'interpolate'`` and ``ref_w`` for ``'extrapolate'``.
        device: device of the result.

    Returns:
        Tensor: ``(height * width, 2)`` float32, columns ``(x, y)``, x fastest.
    """
    return grid_axes(height, width, mode=mode, ref_size=ref_size, rule=rule, device=device).flat()


def grid_axes(
    height: int,
    width: int,
    *,
    mode: PositionMode = "extrapolate",
    ref_size: Optional[tuple[float, float]] = None,
    rule: CoordinateRule = "index",
    device: Optional[torch.device] = None,
) -> GridCoords:
    """The coordinates of :func:`grid_coords` by axis (same arguments): ``xs`` ``(width,)``, ``ys`` ``(height,)``."""
    if height < 1 or width < 1:
        raise ValueError(f"grid must be at least 1x1, got {height}x{width}")
    if mode not in POSITION_MODES:
        raise ValueError(f"unknown RoPE position mode '{mode}'; expected one of {POSITION_MODES}")
    if rule not in COORDINATE_RULES:
        raise ValueError(f"unknown RoPE coordinate rule '{rule}'; expected one of {COORDINATE_RULES}")
    xs = torch.arange(width, dtype=torch.float32, device=device)
    ys = torch.arange(height, dtype=torch.float32, device=device)
    if rule == "centered":
        xs, ys = _centered(xs, width, 0, mode, ref_size), _centered(ys, height, 1, mode, ref_size)
    elif mode == "interpolate":
        if ref_size is None:
            raise ValueError("RoPE position mode 'interpolate' needs ref_size=(ref_h, ref_w)")
        xs = xs * (ref_size[1] / width)
        ys = ys * (ref_size[0] / height)
    return GridCoords(xs, ys)


def _centered(t: torch.Tensor, size: int, axis: int, mode: str, ref_size: Optional[tuple[float, float]]
              ) -> torch.Tensor:
    """Token centres ``t + 0.5`` of one axis of ``size`` tokens, centred and scaled (``axis``: 0 = x, 1 = y)."""
    if mode == "interpolate":
        # the operation order of DINOv3's reference code: normalise to [0, 1], then map to [-1, 1]
        return 2.0 * ((t + 0.5) / size) - 1.0
    if ref_size is None:
        raise ValueError("RoPE coordinate rule 'centered' with mode 'extrapolate' needs ref_size=(ref_h, ref_w)")
    return (2.0 * t + (1.0 - size)) / ref_size[1 - axis]
