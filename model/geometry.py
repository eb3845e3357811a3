"""Similarity and affine transforms between point sets, and the bounding box of points.

numpy-only (shared by training, evaluation and the service; the input crop
built on these is ``model.crop``). Points are (N, 2) in pixels with the centre
of the top-left pixel at (0, 0). A transform is a 2x3 matrix ``M`` acting on
column vectors: ``p' = M[:, :2] @ p + M[:, 2]``, the convention of
``cv2.warpAffine``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray


def fit_similarity(src: npt.ArrayLike, dst: npt.ArrayLike) -> FloatArray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src to dst."""
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(
            f"expected two (N, 2) point sets of one shape, got {s.shape} and {d.shape}"
        )
    s_mean, d_mean = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - s_mean, d - d_mean
    norm = float((sc**2).sum())
    if norm <= 0.0:
        raise ValueError("source points are all identical: no similarity is defined")
    a = float((sc * dc).sum()) / norm
    b = float((sc[:, 0] * dc[:, 1] - sc[:, 1] * dc[:, 0]).sum()) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (d_mean - rot @ s_mean)[:, None]])


def invert_affine(m: npt.ArrayLike) -> FloatArray:
    """Inverse of a 2x3 affine transform."""
    mat = np.asarray(m, dtype=np.float64)
    inv = np.linalg.inv(mat[:, :2])
    return np.hstack([inv, (-inv @ mat[:, 2])[:, None]])


def compose_affine(outer: npt.ArrayLike, inner: npt.ArrayLike) -> FloatArray:
    """The 2x3 transform that applies ``inner`` first, then ``outer``."""
    o, i = np.asarray(outer, dtype=np.float64), np.asarray(inner, dtype=np.float64)
    return np.hstack([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]])


def apply_affine(m: npt.ArrayLike, points: npt.ArrayLike) -> FloatArray:
    """Apply a 2x3 transform to points (..., 2)."""
    mat = np.asarray(m, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    return np.asarray(pts @ mat[:, :2].T + mat[:, 2])


def bounding_box(points: npt.ArrayLike) -> FloatArray:
    """[x_min, y_min, x_max, y_max] of points (N, 2)."""
    pts = np.asarray(points, dtype=np.float64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])
