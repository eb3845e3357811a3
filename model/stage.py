"""The feed-forward part of one DAN stage: the VGG-style network of the paper's Table 1."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class StageNetwork(nn.Module):
    """conv 3x3 pairs with 2x2 max pools, dropout, fc1 (BN + ReLU), fc2 -> dS.

    With the paper's widths (64, 128, 256, 512) and a 112x112 input this is
    Table 1 exactly. ``forward`` returns the landmark update dS (B, N, 2) and the
    fc1 activations (B, fc_units) that feed the next stage's feature image.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        widths: tuple[int, ...],
        fc_units: int,
        num_landmarks: int,
        dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += _conv_block(channels, width)
            layers += _conv_block(width, width)
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            channels = width
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Sequential(
            nn.Linear(channels * side * side, fc_units, bias=False),
            nn.BatchNorm1d(fc_units),
            nn.ReLU(inplace=True),
        )
        self.fc2 = nn.Linear(fc_units, num_landmarks * 2)
        self.num_landmarks = num_landmarks
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
        # Start every stage as the identity update: dS = 0.
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)  # (B, C, s, s)
        h = self.fc1(self.dropout(torch.flatten(h, 1)))  # (B, fc_units)
        # The update is added to coordinates of ~100 px: compute it in fp32 even under autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            ds = self.fc2(h.float())  # (B, 2N)
        return ds.reshape(-1, self.num_landmarks, 2), h
