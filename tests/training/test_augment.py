"""training.augment: warped images and transformed landmarks stay consistent."""

from __future__ import annotations

import numpy as np
import pytest

from model.landmarks import MIRROR_PERMUTATION
from training.augment import (
    Appearance,
    CropSampler,
    Face,
    Perturbation,
    change_appearance,
    make_crop,
)


def _dotted_face(points: np.ndarray, size: tuple[int, int]) -> Face:
    """A black image with one bright 3x3 dot at each of a few landmarks."""
    image = np.zeros(size, np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return Face(image, points, np.array([x0, y0, x1, y1]))


def _face_points(mean_shape: np.ndarray) -> np.ndarray:
    # The mean shape, scaled up and moved: a face about 170 px wide in a 300 x 260 image.
    return (mean_shape - 55.5) * 3.0 + np.array([150.0, 130.0])


def test_a_dot_lands_where_the_transformed_landmark_says(mean_shape: np.ndarray) -> None:
    points = _face_points(mean_shape)
    chosen = [8, 30, 36, 45, 48, 54]
    face = _dotted_face(points[chosen], (260, 300))
    face = Face(face.image, points, face.box)
    rng = np.random.default_rng(0)
    for _ in range(10):
        crop, landmarks = make_crop(face, mean_shape, 112, rng, Perturbation(20.0, 0.25, 0.1))
        for k in chosen:
            x, y = landmarks[k]
            if not (3 <= x <= 108 and 3 <= y <= 108):
                continue
            cx, cy = round(x), round(y)
            patch = crop[cy - 1 : cy + 2, cx - 1 : cx + 2]
            assert patch.max() > 100, f"no dot at landmark {k} ({x:.1f}, {y:.1f})"


def test_unperturbed_crop_puts_the_face_on_the_mean_shape(mean_shape: np.ndarray) -> None:
    points = _face_points(mean_shape)
    face = Face(np.zeros((260, 300), np.uint8), points, np.r_[points.min(0), points.max(0)])
    _, landmarks = make_crop(face, mean_shape, 112)
    np.testing.assert_allclose(landmarks, mean_shape, atol=1e-6)


def test_mirrored_face_is_consistent(mean_shape: np.ndarray) -> None:
    points = _face_points(mean_shape)
    face = _dotted_face(points[[36]], (260, 300))  # a dot on the right eye's outer corner only
    face = Face(face.image, points, face.box)
    mirrored = face.mirrored()
    # Point 45 of the mirrored face is the mirror image of point 36: the dot is there.
    x, y = np.round(mirrored.landmarks[45]).astype(int)
    assert mirrored.image[y, x] == 255
    np.testing.assert_allclose(mirrored.landmarks[45], [299 - points[36, 0], points[36, 1]])
    np.testing.assert_allclose(
        mirrored.landmarks[list(MIRROR_PERMUTATION)][36], mirrored.landmarks[45]
    )


def test_sampler_draws_varied_batches(mean_shape: np.ndarray) -> None:
    points = _face_points(mean_shape)
    face = _dotted_face(points, (260, 300))
    sampler = CropSampler([face], mean_shape, 112, Perturbation(), seed=0)
    images, targets = sampler.sample(6)
    assert images.shape == (6, 1, 112, 112) and images.dtype == np.uint8
    assert targets.shape == (6, 68, 2)
    assert len({round(float(t[0, 0]), 3) for t in targets}) == 6


def test_appearance_off_changes_nothing_and_draws_no_random_numbers(
    mean_shape: np.ndarray,
) -> None:
    face = _dotted_face(_face_points(mean_shape), (260, 300))
    plain = CropSampler([face], mean_shape, 112, Perturbation(), seed=3)
    off = CropSampler([face], mean_shape, 112, Perturbation(), seed=3, appearance=Appearance())
    for (a, ta), (b, tb) in zip(
        (plain.sample(4) for _ in range(3)), (off.sample(4) for _ in range(3)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ta, tb)


def test_appearance_changes_pixels_but_never_landmarks(mean_shape: np.ndarray) -> None:
    face = _dotted_face(_face_points(mean_shape), (260, 300))
    strong = Appearance(0.1, 0.3, 1.0, 0.05, 1.0)
    plain = CropSampler([face], mean_shape, 112, Perturbation(), seed=5)
    changed = CropSampler([face], mean_shape, 112, Perturbation(), seed=5, appearance=strong)
    a, ta = plain.sample(1)
    b, tb = changed.sample(1)
    np.testing.assert_array_equal(ta, tb)  # the geometry was drawn first, from the same state
    assert b.dtype == np.uint8 and b.shape == a.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2.0


@pytest.mark.parametrize(
    ("appearance", "check"),
    [
        (Appearance(noise_sd=0.05), "noise"),
        (Appearance(blur_probability=1.0), "blur"),
        (Appearance(occlusion_probability=1.0), "occlusion"),
        (Appearance(contrast_sd=0.5), "contrast"),
    ],
)
def test_each_appearance_change_does_what_it_says(appearance: Appearance, check: str) -> None:
    rng = np.random.default_rng(0)
    crop = np.full((112, 112), 100, np.uint8)
    crop[40:70, 40:70] = 200  # a bright square: edges for the blur, contrast for the factor
    out = change_appearance(crop, rng, appearance).astype(int)
    diff = out - crop.astype(int)
    if check == "noise":
        assert 5 < diff.std() < 20 and abs(diff.mean()) < 1
    elif check == "blur":
        assert out[55, 55] == 200 and out[100, 100] == 100  # flat regions stay
        assert 100 < out[55, 40] < 200  # the edge is softened
    elif check == "occlusion":
        changed = np.argwhere(diff != 0)
        rows, cols = np.ptp(changed[:, 0]) + 1, np.ptp(changed[:, 1]) + 1
        assert 0.05 * 112 <= rows <= 0.4 * 112 and cols <= 0.4 * 112  # one rectangle
    else:
        assert np.unique(out).size == 2 and out[55, 55] - out[0, 0] != 100  # two greys, new gap
