"""service.cropping: an upload's crop is the one evaluation makes, keypoint crops, landmarks back."""

from __future__ import annotations

import numpy as np
import pytest

from model.crop import box_crop_transform, warp_crop
from model.geometry import apply_affine
from service.cropping import crop_face, keypoint_crop_transform, keypoints_of, to_image, warp_face
from service.imaging import ImageLimits, decode_image
from training.dataset import Sample, read_gray


def test_an_uploads_crop_is_the_evaluations_crop_bit_for_bit(
    test_faces: list[Sample], mean_shape: np.ndarray
) -> None:
    limits = ImageLimits(max_bytes=10**7, max_pixels=10**7)
    for sample in test_faces:
        gray = decode_image(sample.image_path.read_bytes(), limits).gray  # Pillow
        box = sample.detector_box
        crop = crop_face(gray, box, mean_shape, 112)
        expected_transform = box_crop_transform(box, mean_shape)
        assert np.array_equal(crop.transform, expected_transform)
        assert crop.pixels.shape == (112, 112)
        evaluation = warp_crop(read_gray(sample.image_path), expected_transform, 112)  # OpenCV
        assert np.array_equal(crop.pixels, evaluation)


def test_landmarks_map_back_to_the_image(test_faces: list[Sample], mean_shape: np.ndarray) -> None:
    sample = test_faces[0]
    gray = np.zeros((384, 384), dtype=np.uint8)
    crop = crop_face(gray, sample.detector_box, mean_shape, 112)
    in_crop = apply_affine(crop.transform, sample.landmarks)
    assert np.allclose(to_image(in_crop, crop), sample.landmarks, atol=1e-9)
    # The ground truth lands near the mean shape in the crop: the box convention holds.
    assert np.abs(in_crop - mean_shape).mean() < 10.0


def test_keypoints_are_the_eye_centroids_nose_tip_and_mouth_corners(
    mean_shape: np.ndarray,
) -> None:
    points = keypoints_of(mean_shape)
    assert points[0] == pytest.approx(mean_shape[36:42].mean(axis=0))
    assert points[1] == pytest.approx(mean_shape[42:48].mean(axis=0))
    assert np.array_equal(points[2:], mean_shape[[30, 48, 54]])
    assert points[0, 0] < points[1, 0]  # the image-left eye first, as detectors give them


def test_a_keypoint_crop_undoes_the_similarity_that_placed_the_face(
    mean_shape: np.ndarray,
) -> None:
    # A face: the mean shape turned by 15 degrees, scaled by 2.5 and moved.
    angle = np.deg2rad(15.0)
    rotation = 2.5 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = np.hstack([rotation, [[140.0], [90.0]]])
    face = apply_affine(placed, mean_shape)
    transform = keypoint_crop_transform(keypoints_of(face), mean_shape)
    assert np.allclose(apply_affine(transform, face), mean_shape, atol=1e-9)
    gray = np.zeros((384, 384), dtype=np.uint8)
    crop = warp_face(gray, transform, 112)
    assert crop.pixels.shape == (112, 112)
    assert np.allclose(to_image(mean_shape, crop), face, atol=1e-9)
