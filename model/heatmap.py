"""Landmark heatmap layer: equation (3) of the paper, H(p) = 1 / (1 + min_i |p - s_i|).

Computed densely with plain tensor math so it exports to standard ONNX ops.
Squared distances are separable, |p - s|^2 = (x - s_x)^2 + (y - s_y)^2, so the
(B, N, H, W) tensor is one broadcast add of a row and a column term, and the
square root is taken once per pixel, of the minimum. The support region is an
option (see ``DANConfig.heatmap_support``).
"""

from __future__ import annotations

import torch
from torch import Tensor

_FAR = 1e12  # squared distance standing for "outside the support"


def landmark_heatmap(
    shapes: Tensor,
    size: int,
    support: str = "radius",
    radius: float = 16.0,
    half_size: int = 8,
) -> Tensor:
    """Heatmaps (B, 1, size, size) of landmark sets (B, N, 2) given in pixel coordinates.

    ``support="radius"``: values within ``radius`` of the nearest landmark, else 0
    (the paper). ``support="window"``: each landmark, clamped to
    [half_size, size - 1 - half_size], contributes 1 / (1 + |p - s_i|) inside the
    (2 half_size + 1)^2 square around its integer part, and the heatmap is the
    maximum of the contributions, 0 elsewhere (the reference code).
    """
    if support not in ("radius", "window"):
        raise ValueError(f"support must be 'radius' or 'window', got {support!r}")
    shapes = shapes.float()
    coords = torch.arange(size, dtype=torch.float32, device=shapes.device)  # (S,)
    if support == "window":
        shapes = shapes.clamp(float(half_size), float(size - 1 - half_size))
    dx = coords - shapes[..., 0:1]  # (B, N, S)
    dy = coords - shapes[..., 1:2]  # (B, N, S)
    dx2, dy2 = dx * dx, dy * dy
    if support == "window":
        # Squared distance only inside each landmark's window, "far" outside it.
        corner = torch.floor(shapes)  # (B, N, 2)
        outside_x = ((coords - corner[..., 0:1]).abs() > half_size).float()  # (B, N, S)
        outside_y = ((coords - corner[..., 1:2]).abs() > half_size).float()
        dx2 = dx2 + outside_x * _FAR
        dy2 = dy2 + outside_y * _FAR
    d2 = dy2.unsqueeze(-1) + dx2.unsqueeze(-2)  # (B, N, S, S): rows y, columns x
    # (clamped below: sqrt has an infinite slope at 0, which would poison end-to-end gradients)
    nearest2 = d2.min(dim=1).values  # (B, S, S)
    limit = radius * radius if support == "radius" else _FAR / 2
    heat = torch.where(
        nearest2 <= limit,
        1.0 / (1.0 + torch.sqrt(nearest2.clamp_min(1e-12))),
        torch.zeros_like(nearest2),
    )
    return heat.unsqueeze(1)  # (B, 1, S, S)
