"""Face-alignment metrics of the 300-W benchmark, in numpy.

Per-image error: mean point-to-point distance over the 68 points divided by
the inter-ocular (outer eye corners), inter-pupil (eye centres) or
ground-truth box diagonal distance. AUC_a: area under the cumulative error
distribution (CED) up to a, divided by a. Failure: error >= a.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from model.arrays import FloatArray
from model.geometry import bounding_box
from model.landmarks import inter_ocular_distance, inter_pupil_distance

NORMALISATIONS = ("inter_ocular", "inter_pupil", "box_diagonal")


def point_errors(pred: FloatArray, target: FloatArray) -> FloatArray:
    """Mean point-to-point distance per image (M,) for landmark sets (M, N, 2)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    return np.asarray(np.linalg.norm(pred - target, axis=-1).mean(axis=-1))


def box_diagonal(target: FloatArray) -> FloatArray:
    boxes = np.stack([bounding_box(t) for t in target])
    return np.asarray(np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))


def normalised_errors(pred: FloatArray, target: FloatArray, normalisation: str) -> FloatArray:
    """Per-image error (M,) under one of ``NORMALISATIONS``."""
    if normalisation == "inter_ocular":
        norm = inter_ocular_distance(target)
    elif normalisation == "inter_pupil":
        norm = inter_pupil_distance(target)
    elif normalisation == "box_diagonal":
        norm = box_diagonal(target)
    else:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    return point_errors(pred, target) / norm


def ced(errors: FloatArray, threshold: float, steps: int = 1000) -> tuple[FloatArray, FloatArray]:
    """Cumulative error distribution: (thresholds, fraction of images with error <= x)."""
    xs = np.linspace(0.0, threshold, steps + 1)
    fractions = (np.sort(errors)[None, :] <= xs[:, None]).mean(axis=1)
    return xs, np.asarray(fractions, dtype=np.float64)


def auc(errors: FloatArray, threshold: float = 0.08) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (exact)."""
    e = np.sort(np.clip(np.asarray(errors, dtype=np.float64), 0.0, None))
    n = len(e)
    if n == 0:
        raise ValueError("no errors to summarise")
    # The CED is a step function: fraction k/n on [e_k, e_{k+1}); integrate it exactly.
    edges = np.append(np.minimum(e, threshold), threshold)
    widths = np.diff(edges)
    heights = np.arange(1, n + 1) / n
    return float((widths * heights).sum() / threshold)


def failure_rate(errors: FloatArray, threshold: float = 0.08) -> float:
    return float((np.asarray(errors) >= threshold).mean())


@dataclass(frozen=True)
class Summary:
    images: int
    inter_ocular: float  # mean error, fraction (x100 for %)
    inter_pupil: float
    box_diagonal: float
    auc_0_08: float  # inter-ocular AUC up to 0.08
    failure_0_08: float  # inter-ocular failure rate at 0.08

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarise(pred: FloatArray, target: FloatArray, threshold: float = 0.08) -> Summary:
    io = normalised_errors(pred, target, "inter_ocular")
    return Summary(
        images=len(io),
        inter_ocular=float(io.mean()),
        inter_pupil=float(normalised_errors(pred, target, "inter_pupil").mean()),
        box_diagonal=float(normalised_errors(pred, target, "box_diagonal").mean()),
        auc_0_08=auc(io, threshold),
        failure_0_08=failure_rate(io, threshold),
    )
