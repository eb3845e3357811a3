"""model.heatmap equals a brute-force numpy evaluation of equation (3) in its support region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.heatmap import landmark_heatmap


def _brute_force_radius(points: np.ndarray, size: int, radius: float) -> np.ndarray:
    out = np.zeros((size, size))
    for y in range(size):
        for x in range(size):
            d = min(np.hypot(x - px, y - py) for px, py in points)
            out[y, x] = 1.0 / (1.0 + d) if d <= radius else 0.0
    return out


def _brute_force_window(points: np.ndarray, size: int, half: int) -> np.ndarray:
    out = np.zeros((size, size))
    for px, py in np.clip(points, half, size - 1 - half):
        cx, cy = int(np.floor(px)), int(np.floor(py))
        for y in range(cy - half, cy + half + 1):
            for x in range(cx - half, cx + half + 1):
                out[y, x] = max(out[y, x], 1.0 / (1.0 + np.hypot(x - px, y - py)))
    return out


@pytest.fixture
def points() -> np.ndarray:
    rng = np.random.default_rng(0)
    # A few landmarks, some near or beyond the border of a small frame.
    return np.vstack([rng.uniform(5, 43, size=(6, 2)), [[-3.0, 20.0], [46.5, 47.9]]])


def test_radius_support_matches_equation_3(points: np.ndarray) -> None:
    got = landmark_heatmap(torch.tensor(points)[None].float(), 48, "radius", radius=16.0)
    expected = _brute_force_radius(points, 48, 16.0)
    assert got.shape == (1, 1, 48, 48)
    np.testing.assert_allclose(got[0, 0].numpy(), expected, atol=1e-5)
    assert (expected == 0).any() and (expected > 0).any()


def test_window_support_matches_the_reference_code(points: np.ndarray) -> None:
    got = landmark_heatmap(torch.tensor(points)[None].float(), 48, "window", half_size=8)
    np.testing.assert_allclose(got[0, 0].numpy(), _brute_force_window(points, 48, 8), atol=1e-5)


def test_batched_heatmaps_are_independent(points: np.ndarray) -> None:
    batch = torch.tensor(np.stack([points, points[::-1] + 1.5])).float()
    got = landmark_heatmap(batch, 48, "radius")
    single = landmark_heatmap(batch[1:], 48, "radius")
    torch.testing.assert_close(got[1:], single)
