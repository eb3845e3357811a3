"""Landmark heatmap layer: equation (3) of the paper, H(p) = 1 / (1 + min_i |p - s_i|).

Computed densely with plain tensor math so it exports to standard ONNX ops.
The support region is an option (see ``DANConfig.heatmap_support``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.image_transform import pixel_grid


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
    B = shapes.shape[0]
    grid = pixel_grid(size, size, shapes.device)  # (P, 2), P = size*size
    shapes = shapes.float()
    if support == "window":
        shapes = shapes.clamp(float(half_size), float(size - 1 - half_size))
    diff = grid[None, None, :, :] - shapes[:, :, None, :]  # (B, N, P, 2)
    dist = torch.sqrt((diff * diff).sum(dim=-1))  # (B, N, P)
    if support == "radius":
        nearest = dist.min(dim=1).values  # (B, P)
        heat = torch.where(nearest <= radius, 1.0 / (1.0 + nearest), torch.zeros_like(nearest))
    elif support == "window":
        offset = grid[None, None, :, :] - torch.floor(shapes)[:, :, None, :]  # (B, N, P, 2)
        inside = (offset.abs() <= float(half_size)).all(dim=-1)  # (B, N, P)
        contrib = torch.where(inside, 1.0 / (1.0 + dist), torch.zeros_like(dist))
        heat = contrib.max(dim=1).values  # (B, P)
    else:
        raise ValueError(f"support must be 'radius' or 'window', got {support!r}")
    return heat.reshape(B, 1, size, size)
