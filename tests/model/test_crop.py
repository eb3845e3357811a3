"""model.crop: the box convention, the warp, and one crop for training, evaluation and service."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import service.cropping
from model.crop import (
    box_crop_transform,
    crop_face,
    initial_shape_from_box,
    to_image,
    warp_crop,
    warp_face,
)
from model.geometry import apply_affine, bounding_box
from training.augment import Face, make_crop
from training.dataset import load_split, read_gray


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


def test_the_warp_is_bilinear_with_the_edge_replicated() -> None:
    image = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    identity = np.eye(2, 3)
    assert np.array_equal(warp_crop(image, identity, 8), image[:8, :8])
    # Half a pixel to the right: the mean of horizontal neighbours (OpenCV's fixed point rounds).
    half = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]])
    expected = (image[:8, :8].astype(float) + image[:8, 1:9]) / 2
    assert np.abs(warp_crop(image, half, 8)[:, 1:] - expected[:, 1:]).max() <= 1
    # Beyond the image: its edge pixels, repeated.
    far = np.array([[1.0, 0.0, 20.0], [0.0, 1.0, 0.0]])  # crop x = image x + 20
    assert np.array_equal(warp_crop(image, far, 8)[:, 0], image[:8, 0])


def test_a_crop_keeps_its_transform_and_maps_landmarks_back(mean_shape: np.ndarray) -> None:
    gray = np.zeros((300, 400), dtype=np.uint8)
    box = np.array([120.0, 80.0, 260.0, 230.0])
    crop = crop_face(gray, box, mean_shape, 112)
    assert crop.pixels.shape == (112, 112) and crop.pixels.dtype == np.uint8
    assert np.array_equal(crop.transform, box_crop_transform(box, mean_shape))
    points = initial_shape_from_box(mean_shape, box)
    np.testing.assert_allclose(to_image(apply_affine(crop.transform, points), crop), points)
    assert np.array_equal(warp_face(gray, crop.transform, 112).pixels, crop.pixels)


def test_trainings_crop_is_the_evaluation_and_service_crop_bit_for_bit(
    data_root: Path, mean_shape: np.ndarray
) -> None:
    assert service.cropping.crop_face is crop_face  # the service crops with this very function
    samples = [s for s in load_split(data_root, "common").samples if s.detector_box is not None]
    for sample in samples[:4]:
        gray = read_gray(sample.image_path)
        box = sample.box("file")
        pixels, landmarks = make_crop(Face(gray, sample.landmarks, box), mean_shape, 112)
        crop = crop_face(gray, box, mean_shape, 112)
        assert np.array_equal(pixels, crop.pixels)
        np.testing.assert_allclose(to_image(landmarks, crop), sample.landmarks, atol=1e-9)
