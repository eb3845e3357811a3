"""Tiny exported models with a confidence output whose value the test chooses.

The network is the tiny random DAN of ``tiny_model`` (``tiny_dan``); its confidence head
(``training.confidence.ConfidenceHead``) is calibrated to a constant, ``a = 0``
and ``b = logit(value)``, so every crop gets ``value``; exported by
``training.export`` with ``dan.confidence`` carrying ``threshold``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tiny_dan import tiny_dan

from model.dan import DAN
from model.metadata import ConfidenceInfo
from training.confidence import ConfidenceHead
from training.export import export


def constant_confidence_model(
    path: Path, mean_shape: np.ndarray, value: float, threshold: float
) -> Path:
    """A tiny model whose confidence is ``value`` for every crop, its default ``threshold``."""
    model = tiny_dan(mean_shape)
    head = ConfidenceHead(model.config.num_stages, model.config.fc_units)
    head.calibration.copy_(torch.tensor([0.0, math.log(value / (1.0 - value))]))
    return _export(
        model, head, ConfidenceInfo(threshold=threshold, method="constant (a test model)"), path
    )


def varying_confidence_model(path: Path, mean_shape: np.ndarray) -> Path:
    """A tiny model whose confidence differs from crop to crop: its head's linear layer keeps
    its random initial weights (seeded), uncalibrated (``a = 1``, ``b = 0``)."""
    model = tiny_dan(mean_shape)
    head = ConfidenceHead(model.config.num_stages, model.config.fc_units)
    return _export(model, head, ConfidenceInfo(threshold=0.5, method="random (a test model)"), path)


def _export(model: DAN, head: ConfidenceHead, info: ConfidenceInfo, path: Path) -> Path:
    export(model, path, name="tiny-confidence", version="0.0.1", confidence=(head.eval(), info))
    return path
