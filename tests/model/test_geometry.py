"""model.geometry: similarity fitting, box convention and crop transforms."""

from __future__ import annotations

import numpy as np

from model.geometry import (
    apply_affine,
    bounding_box,
    box_crop_transform,
    compose_affine,
    fit_similarity,
    initial_shape_from_box,
    invert_affine,
)


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


def test_initial_shape_fills_the_box(mean_shape: np.ndarray) -> None:
    box = np.array([10.0, 20.0, 110.0, 140.0])
    shape = initial_shape_from_box(mean_shape, box)
    x0, y0, x1, y1 = bounding_box(shape)
    np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2], [60.0, 80.0], atol=1e-9)
    sx0, sy0, sx1, sy1 = bounding_box(mean_shape)
    scale = 0.5 * (100 / (sx1 - sx0) + 120 / (sy1 - sy0))
    np.testing.assert_allclose(x1 - x0, scale * (sx1 - sx0), rtol=1e-12)


def test_box_crop_transform_maps_initial_shape_onto_mean_shape(mean_shape: np.ndarray) -> None:
    box = np.array([200.0, 50.0, 320.0, 180.0])
    m = box_crop_transform(box, mean_shape)
    np.testing.assert_allclose(
        apply_affine(m, initial_shape_from_box(mean_shape, box)), mean_shape, atol=1e-9
    )
