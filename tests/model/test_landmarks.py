"""model.landmarks: the mirror permutation of the iBUG 68-point scheme, and the mirror average."""

from __future__ import annotations

import numpy as np

from model.landmarks import (
    LEFT_EYE,
    MIRROR_PERMUTATION,
    RIGHT_EYE,
    mirror_average,
    mirror_landmarks,
)


def test_mirror_permutation_is_an_involution() -> None:
    perm = np.array(MIRROR_PERMUTATION)
    assert sorted(perm.tolist()) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))


def test_mirror_swaps_the_eyes() -> None:
    perm = np.array(MIRROR_PERMUTATION)
    assert set(perm[list(RIGHT_EYE)].tolist()) == set(LEFT_EYE)
    assert set(perm[list(LEFT_EYE)].tolist()) == set(RIGHT_EYE)
    # Outer corners map to outer corners: 36 <-> 45, inner 39 <-> 42.
    assert perm[36] == 45 and perm[39] == 42


def test_mirroring_a_real_shape_twice_is_the_identity(mean_shape: np.ndarray) -> None:
    once = mirror_landmarks(mean_shape, 112)
    np.testing.assert_allclose(mirror_landmarks(once, 112), mean_shape, atol=1e-12)
    # The mirrored right eye sits where the original left eye was reflected.
    np.testing.assert_allclose(once[36], [111 - mean_shape[45, 0], mean_shape[45, 1]])


def test_the_mirror_average_maps_the_mirrored_answer_back_before_averaging(
    mean_shape: np.ndarray,
) -> None:
    # An answer consistent with its mirror image is kept as it is; otherwise the two meet
    # halfway.
    flipped = mirror_landmarks(mean_shape, 112)
    np.testing.assert_allclose(mirror_average(mean_shape, flipped, 112), mean_shape, atol=1e-12)
    moved = mean_shape + np.array([2.0, 0.0])
    np.testing.assert_allclose(
        mirror_average(moved, flipped, 112), mean_shape + np.array([1.0, 0.0]), atol=1e-12
    )
