"""Similarity transforms between landmark sets, and how a face box becomes a crop.

numpy-only (shared by training, evaluation and the service). Points are (N, 2)
in pixels with the centre of the top-left pixel at (0, 0). A transform is a
2x3 matrix ``M`` acting on column vectors: ``p' = M[:, :2] @ p + M[:, 2]``,
the convention of ``cv2.warpAffine``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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


def initial_shape_from_box(mean_shape: npt.ArrayLike, box: npt.ArrayLike) -> FloatArray:
    """Place the mean shape in a face box: the DAN box convention.

    The mean shape is scaled by the mean of (box width / shape width) and
    (box height / shape height), not rotated, and its bounding box is centred
    on the box centre.
    """
    shape = np.asarray(mean_shape, dtype=np.float64)
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64))
    if not (x1 > x0 and y1 > y0):
        raise ValueError(
            f"expected a box [x_min, y_min, x_max, y_max] with positive size, got {[x0, y0, x1, y1]}"
        )
    sx0, sy0, sx1, sy1 = bounding_box(shape)
    scale = 0.5 * ((x1 - x0) / (sx1 - sx0) + (y1 - y0) / (sy1 - sy0))
    shape_centre = np.array([(sx0 + sx1) / 2, (sy0 + sy1) / 2])
    box_centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return np.asarray((shape - shape_centre) * scale + box_centre)


def crop_transform(initial_shape: npt.ArrayLike, mean_shape: npt.ArrayLike) -> FloatArray:
    """Image -> crop transform: the similarity taking the initial shape onto the mean shape."""
    return fit_similarity(initial_shape, mean_shape)


def box_crop_transform(box: npt.ArrayLike, mean_shape: npt.ArrayLike) -> FloatArray:
    """Image -> crop transform for a face box (see ``initial_shape_from_box``)."""
    return crop_transform(initial_shape_from_box(mean_shape, box), mean_shape)
