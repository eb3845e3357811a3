"""Image transform layer: bilinear resampling of a batch of images by similarities.

The sampling grid is built with plain tensor math (no ``F.affine_grid``) and
sampled with ``F.grid_sample`` (ONNX ``GridSample``, opset >= 16). Pixel
centres are integer coordinates, so ``align_corners=True``; outside the image
the edge is replicated, as in the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.similarity import invert_similarity


def pixel_grid(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Coordinates (H*W, 2) of every pixel centre, x first, row-major."""
    ys = torch.arange(height, dtype=torch.float32, device=device)
    xs = torch.arange(width, dtype=torch.float32, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (H*W, 2)


def warp_images(images: Tensor, A: Tensor, t: Tensor) -> Tensor:
    """Resample images (B, C, H, W) so that output pixel p shows input point T^-1(p).

    ``(A, t)`` is the transform T from input to output coordinates; this is
    ``cv2.warpAffine(image, [A | t], (W, H), flags=INTER_LINEAR,
    borderMode=BORDER_REPLICATE)`` for each image of the batch.
    """
    B, _, H, W = images.shape
    A_inv, t_inv = invert_similarity(A.float(), t.float())
    grid = pixel_grid(H, W, images.device)  # (H*W, 2)
    src = grid @ A_inv.transpose(1, 2) + t_inv.unsqueeze(1)  # (B, H*W, 2) input-pixel coordinates
    scale = torch.tensor([2.0 / (W - 1), 2.0 / (H - 1)], device=images.device)
    src = src * scale - 1.0  # normalised to [-1, 1] at the outer pixel centres
    return F.grid_sample(
        images.float(),
        src.reshape(B, H, W, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
