"""A detector's boxes -> the model's box convention: a per-coordinate mapping and its fit.

The model was evaluated with the 300-W detector boxes; another detector draws
its boxes elsewhere (CenterFace's include the forehead). The mapping moves a
box's centre by a fraction of its size and scales its sides::

    cx' = cx + dx * w     cy' = cy + dy * h     w' = sw * w     h' = sh * h

``fit_box_mapping`` finds the four numbers by least squares on errors measured
in units of the detector box's size, so big and small faces weigh alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray


@dataclass(frozen=True)
class BoxMapping:
    """Centre offsets (fractions of the box's width and height) and side scales."""

    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    def __post_init__(self) -> None:
        if not (self.sw > 0.0 and self.sh > 0.0):
            raise ValueError(f"side scales must be positive, got sw={self.sw}, sh={self.sh}")

    def apply(self, boxes: npt.ArrayLike) -> FloatArray:
        """Mapped boxes, (4,) or (N, 4) [x_min, y_min, x_max, y_max]."""
        b = np.asarray(boxes, dtype=np.float64)
        cx, cy, w, h = _centre_size(b)
        cx, cy = cx + self.dx * w, cy + self.dy * h
        w, h = self.sw * w, self.sh * h
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _centre_size(b: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    if b.shape[-1] != 4:
        raise ValueError(f"expected boxes (..., 4) [x_min, y_min, x_max, y_max], got {b.shape}")
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, w, h


def fit_box_mapping(detected: npt.ArrayLike, target: npt.ArrayLike) -> BoxMapping:
    """The least-squares ``BoxMapping`` from detector boxes (N, 4) to target boxes (N, 4).

    Each of the four numbers minimises its own squared error in units of the
    detector box: e.g. ``dx`` minimises sum(((tcx - cx) / w - dx)^2), which is
    the mean of those ratios.
    """
    d = np.asarray(detected, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if d.ndim != 2 or d.shape != t.shape or d.shape[0] < 1:
        raise ValueError(f"expected two (N, 4) box arrays of one shape, got {d.shape}, {t.shape}")
    cx, cy, w, h = _centre_size(d)
    tcx, tcy, tw, th = _centre_size(t)
    if not (np.all(w > 0) and np.all(h > 0)):
        raise ValueError("detector boxes must have positive width and height")
    return BoxMapping(
        dx=float(np.mean((tcx - cx) / w)),
        dy=float(np.mean((tcy - cy) / h)),
        sw=float(np.mean(tw / w)),
        sh=float(np.mean(th / h)),
    )


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over union of boxes a (N, 4) and b (M, 4): (N, M)."""
    p = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None]
    q = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None]
    w = np.clip(np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0]), 0, None)
    h = np.clip(np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1]), 0, None)
    inter = w * h
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    area_q = (q[..., 2] - q[..., 0]) * (q[..., 3] - q[..., 1])
    return np.asarray(inter / (area_p + area_q - inter))
