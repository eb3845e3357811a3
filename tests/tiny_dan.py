"""The tiny random DAN that tests export: the real network with 8-channel stages.

Its output layers start at zero, as a new DAN's do, so it answers the mean
shape until a test gives them weights.
"""

from __future__ import annotations

import numpy as np
import torch

from model.config import DANConfig
from model.dan import DAN


def tiny_dan(
    mean_shape: np.ndarray,
    *,
    num_stages: int = 2,
    fc_units: int = DANConfig.fc_units,
    seed: int = 0,
) -> DAN:
    """A random DAN (eval mode) with widths 8-8-8-8 around ``mean_shape`` (68, 2) for 112 px crops."""
    torch.manual_seed(seed)
    return DAN(
        DANConfig(widths=(8, 8, 8, 8), num_stages=num_stages, fc_units=fc_units),
        mean_shape=torch.from_numpy(mean_shape).float(),
        mean_image=torch.full((112, 112), 110.0),
        std_image=torch.full((112, 112), 60.0),
    ).eval()
