"""The canonical mean shape S0: generalised Procrustes over the training shapes.

S0 is centred in the ``image_size`` frame (its bounding box centred on the
frame's centre, (size - 1) / 2 with 0-based pixel centres) and scaled so that
its larger extent is half the frame, leaving a quarter free on each side.
"""

from __future__ import annotations

import numpy as np

from model.arrays import FloatArray
from model.geometry import apply_affine, bounding_box, fit_similarity


def procrustes_mean(shapes: FloatArray, iterations: int = 100, tol: float = 1e-9) -> FloatArray:
    """Generalised Procrustes mean of shapes (M, N, 2): centred, unit norm."""
    if shapes.ndim != 3 or shapes.shape[2] != 2 or len(shapes) == 0:
        raise ValueError(f"expected shapes (M, N, 2) with M > 0, got {shapes.shape}")
    mean = shapes[0] - shapes[0].mean(axis=0)
    mean /= np.linalg.norm(mean)
    for _ in range(iterations):
        aligned = np.stack([apply_affine(fit_similarity(s, mean), s) for s in shapes])
        new = aligned.mean(axis=0)
        new -= new.mean(axis=0)
        new /= np.linalg.norm(new)
        # Keep the orientation of the reference so the iteration cannot drift.
        new = apply_affine(fit_similarity(new, mean), new)
        new /= np.linalg.norm(new)
        if np.abs(new - mean).max() < tol:
            return np.asarray(new)
        mean = new
    return np.asarray(mean)


def canonical_mean_shape(shapes: FloatArray, image_size: int = 112) -> FloatArray:
    """Procrustes mean placed in the canonical frame (see module docstring)."""
    mean = procrustes_mean(shapes)
    x0, y0, x1, y1 = bounding_box(mean)
    scale = (image_size / 2) / max(x1 - x0, y1 - y0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return np.asarray((mean - centre) * scale + (image_size - 1) / 2)
