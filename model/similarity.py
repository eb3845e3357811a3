"""Transform estimation and landmark transform: batched similarity transforms in torch.

A similarity is a pair ``(A, t)``: ``A`` (B, 2, 2) of the form [[a, -b], [b, a]]
and ``t`` (B, 2), mapping ``p -> A p + t`` (column vectors). Everything is
plain differentiable tensor math, so it exports to standard ONNX ops.
"""

from __future__ import annotations

import torch
from torch import Tensor


def estimate_similarity(src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form least-squares similarity taking ``src`` (B, N, 2) to ``dst`` (N, 2) or (B, N, 2)."""
    src = src.float()
    dst = dst.float().expand_as(src)
    src_mean = src.mean(dim=1, keepdim=True)  # (B, 1, 2)
    dst_mean = dst.mean(dim=1, keepdim=True)
    s = src - src_mean  # (B, N, 2)
    d = dst - dst_mean
    norm = (s * s).sum(dim=(1, 2))  # (B,)
    a = (s * d).sum(dim=(1, 2)) / norm  # (B,)
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(dim=1) / norm  # (B,)
    A = torch.stack([torch.stack([a, -b], dim=-1), torch.stack([b, a], dim=-1)], dim=1)  # (B, 2, 2)
    t = dst_mean.squeeze(1) - (A @ src_mean.transpose(1, 2)).squeeze(2)  # (B, 2)
    return A, t


def invert_similarity(A: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of a batch of similarities: [[a, -b], [b, a]]^-1 = [[a, b], [-b, a]] / (a^2 + b^2)."""
    a, b = A[:, 0, 0], A[:, 1, 0]  # (B,)
    det = a * a + b * b
    A_inv = (
        torch.stack([torch.stack([a, b], dim=-1), torch.stack([-b, a], dim=-1)], dim=1)
        / det[:, None, None]
    )  # (B, 2, 2)
    t_inv = -(A_inv @ t.unsqueeze(2)).squeeze(2)  # (B, 2)
    return A_inv, t_inv


def transform_points(points: Tensor, A: Tensor, t: Tensor) -> Tensor:
    """Apply similarities to points (B, N, 2)."""
    return points @ A.transpose(1, 2) + t.unsqueeze(1)  # (B, N, 2)
