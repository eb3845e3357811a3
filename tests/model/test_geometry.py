"""model.geometry: similarity fitting and affine transforms (the crop is in test_crop.py)."""

from __future__ import annotations

import numpy as np

from model.geometry import apply_affine, bounding_box, compose_affine, fit_similarity, invert_affine


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def test_fit_similarity_recovers_a_random_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(68, 2))
    m = _similarity(0.7, 1.3, 12.0, -5.0)
    np.testing.assert_allclose(fit_similarity(src, apply_affine(m, src)), m, atol=1e-10)


def test_invert_and_compose_are_consistent() -> None:
    m = _similarity(-0.3, 0.8, 3.0, 4.0)
    np.testing.assert_allclose(compose_affine(invert_affine(m), m), np.eye(2, 3), atol=1e-12)


def test_bounding_box_is_the_extent_of_the_points() -> None:
    points = np.array([[3.0, 7.0], [-1.0, 2.5], [4.5, 9.0]])
    np.testing.assert_array_equal(bounding_box(points), [-1.0, 2.5, 4.5, 9.0])
