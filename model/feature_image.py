"""Feature image layer: fc1 of the previous stage -> dense (ReLU) -> 56x56 -> 112x112."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FeatureImage(nn.Module):
    def __init__(self, fc_units: int, feature_size: int, image_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(fc_units, feature_size * feature_size)
        nn.init.kaiming_uniform_(self.dense.weight, nonlinearity="relu")
        self.feature_size = feature_size
        self.scale = image_size // feature_size

    def forward(self, fc1: Tensor) -> Tensor:
        f = F.relu(self.dense(fc1))  # (B, s*s)
        f = f.reshape(-1, 1, self.feature_size, self.feature_size)  # (B, 1, s, s)
        return F.interpolate(f, scale_factor=float(self.scale), mode="nearest")  # (B, 1, S, S)
