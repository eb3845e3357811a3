"""Training losses on landmark errors normalised by the target's inter-pupil distance.

``inter_pupil``: the paper's equation 4, the mean point-to-point error over the
inter-pupil distance. ``wing``: the Wing loss (Feng et al., CVPR 2018) applied
to the same normalised point distances: logarithmic below ``width`` (so small
errors keep a strong gradient late in training), linear above it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from model.landmarks import LEFT_EYE, RIGHT_EYE

# Wing parameters in units of the inter-pupil distance: about 10 px and 2 px of a face whose
# pupils are 100 px apart, the proportions of the Wing paper's w = 10, epsilon = 2.
WING_WIDTH = 0.1
WING_CURVATURE = 0.02


def normalised_point_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Point-to-point errors (B, L) divided by each target's inter-pupil distance."""
    right = target[:, list(RIGHT_EYE)].mean(dim=1)  # (B, 2)
    left = target[:, list(LEFT_EYE)].mean(dim=1)  # (B, 2)
    ipd = torch.linalg.vector_norm(left - right, dim=-1)  # (B,)
    dist = torch.linalg.vector_norm(pred.float() - target.float(), dim=-1)  # (B, L)
    errors: Tensor = dist / ipd[:, None]
    return errors


def inter_pupil_normalised_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-face mean point-to-point error (B,) divided by the target's inter-pupil distance."""
    return normalised_point_errors(pred, target).mean(dim=1)


def wing(errors: Tensor, width: float = WING_WIDTH, curvature: float = WING_CURVATURE) -> Tensor:
    """The Wing function of non-negative errors, elementwise (continuous at ``width``)."""
    offset = width - width * math.log1p(width / curvature)
    return torch.where(errors < width, width * torch.log1p(errors / curvature), errors - offset)


def landmark_loss(pred: Tensor, target: Tensor, kind: str = "inter_pupil") -> Tensor:
    """The batch's training loss: ``inter_pupil`` (equation 4) or ``wing``."""
    if kind == "inter_pupil":
        return inter_pupil_normalised_error(pred, target).mean()
    if kind == "wing":
        return wing(normalised_point_errors(pred, target)).mean()
    raise ValueError(f"loss must be 'inter_pupil' or 'wing', got {kind!r}")
