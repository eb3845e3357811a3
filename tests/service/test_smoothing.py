"""The One Euro filter of a stream's landmarks (``service.smoothing``): less jitter, little lag."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.smoothing import LandmarkSmoother, OneEuroParameters, smoothing_factor


def face(iod: float = 60.0) -> np.ndarray:
    """68 points whose outer eye corners (36, 45) are ``iod`` px apart."""
    rng = np.random.default_rng(0)
    points = rng.uniform(0, iod, (68, 2))
    points[36] = (0.0, 0.0)
    points[45] = (iod, 0.0)
    return points


def frame_to_frame(track: list[np.ndarray]) -> float:
    return float(
        np.mean([np.linalg.norm(b - a, axis=1).mean() for a, b in itertools.pairwise(track)])
    )


def test_the_smoothing_factor_is_the_first_order_low_pass() -> None:
    # alpha = 1 / (1 + tau / te), tau = 1 / (2 pi fc)
    assert smoothing_factor(1.0, 30.0) == pytest.approx(1.0 / (1.0 + 30.0 / (2 * np.pi)))
    assert smoothing_factor(1e6, 30.0) == pytest.approx(1.0, abs=1e-4)


def test_the_first_frame_passes_through_and_a_still_face_stays() -> None:
    smoother = LandmarkSmoother()
    still = face()
    np.testing.assert_array_equal(smoother(still), still)
    for _ in range(10):
        np.testing.assert_allclose(smoother(still), still)


def test_jitter_on_a_still_face_drops_to_less_than_half() -> None:
    rng = np.random.default_rng(1)
    still = face()
    noisy = [still + rng.normal(0.0, 0.6, still.shape) for _ in range(200)]
    smoother = LandmarkSmoother()
    smoothed = [smoother(points) for points in noisy]
    assert frame_to_frame(smoothed) < 0.5 * frame_to_frame(noisy)


def test_a_fast_face_is_followed_with_little_lag() -> None:
    # Two inter-ocular distances a second (4 px a frame at 30 frames/s): the lag after a second
    # is a small part of the face.
    smoother = LandmarkSmoother()
    start = face(60.0)
    for k in range(30):
        out = smoother(start + np.array([4.0 * k, 0.0]))
    lag = 4.0 * 29 - float((out - start)[:, 0].mean())
    assert 0.0 < lag < 0.1 * 60.0


def test_the_filter_is_the_same_for_a_face_twice_as_large() -> None:
    # Speeds count in inter-ocular distances: the same motion at twice the size smooths alike.
    rng = np.random.default_rng(2)
    small, large = LandmarkSmoother(), LandmarkSmoother()
    base = face(40.0)
    for _ in range(20):
        step = rng.normal(0.0, 1.0, base.shape)
        a = small(base + step)
        b = large(2.0 * (base + step))
        np.testing.assert_allclose(2.0 * a, b, atol=1e-9)


def test_reset_forgets_the_past() -> None:
    smoother = LandmarkSmoother()
    smoother(face())
    smoother.reset()
    moved = face() + 50.0
    np.testing.assert_array_equal(smoother(moved), moved)


@pytest.mark.parametrize(
    "bad", [{"min_cutoff_hz": 0.0}, {"beta": -1.0}, {"d_cutoff_hz": -2.0}, {"rate_hz": 0.0}]
)
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OneEuroParameters(**bad)
