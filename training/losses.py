"""The training loss of the paper (equation 4): landmark error normalised by the inter-pupil distance."""

from __future__ import annotations

import torch
from torch import Tensor

from model.landmarks import LEFT_EYE, RIGHT_EYE


def inter_pupil_normalised_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-face mean point-to-point error (B,) divided by the target's inter-pupil distance."""
    right = target[:, list(RIGHT_EYE)].mean(dim=1)  # (B, 2)
    left = target[:, list(LEFT_EYE)].mean(dim=1)  # (B, 2)
    ipd = torch.linalg.vector_norm(left - right, dim=-1)  # (B,)
    err = torch.linalg.vector_norm(pred.float() - target.float(), dim=-1).mean(dim=1)  # (B,)
    return torch.as_tensor(err / ipd)


def landmark_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Batch mean of ``inter_pupil_normalised_error``."""
    return inter_pupil_normalised_error(pred, target).mean()
