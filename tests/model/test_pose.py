"""model.pose: known rotations recovered, mirror and in-plane rotation of real photos, the 3D face."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.geometry import apply_affine
from model.landmarks import MIRROR_PERMUTATION, OUTER_EYE_CORNERS, mirror_landmarks
from model.pose import (
    MEAN_FACE_PATH,
    estimate_pose,
    euler_angles,
    mean_face,
    project,
    rotation_matrix,
)
from training.dataset import Sample, load_split, read_gray

YAWS = range(-60, 61, 10)
PITCHES = (-30, -10, 0, 20)
ROLLS = (-35, 0, 25)
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)


@pytest.fixture(scope="module")
def photos(data_root: Path) -> list[Sample]:
    """A few common-subset photos with their annotations, frontal and turned ones."""
    samples = load_split(data_root, "common").samples
    return samples[::50]


def test_euler_angles_invert_the_rotation_matrix() -> None:
    for yaw, pitch, roll in itertools.product(YAWS, PITCHES, ROLLS):
        assert euler_angles(rotation_matrix(yaw, pitch, roll)) == pytest.approx(
            (yaw, pitch, roll), abs=1e-9
        )


def test_the_sign_convention_as_documented() -> None:
    face = mean_face()
    frontal = project(face, rotation_matrix(0, 0, 0), 100.0, (0.0, 0.0))
    nose_x, nose_y = frontal[NOSE_TIP]
    turned = project(face, rotation_matrix(30, 0, 0), 100.0, (0.0, 0.0))
    assert turned[NOSE_TIP, 0] > nose_x  # yaw > 0: the face turns toward the image's right
    up = project(face, rotation_matrix(0, 20, 0), 100.0, (0.0, 0.0))
    assert up[NOSE_TIP, 1] < nose_y  # pitch > 0: the nose rises (image y points down)
    rolled = project(face, rotation_matrix(0, 0, 20), 100.0, (0.0, 0.0))
    right, left = OUTER_EYE_CORNERS  # the subject's right eye is on the image's left
    assert rolled[left, 1] > rolled[right, 1]  # roll > 0: clockwise, the image-right eye lower


def test_synthetic_faces_recover_their_angles_within_1_degree_up_to_60_of_yaw() -> None:
    face = mean_face()
    rng = np.random.default_rng(0)
    for yaw, pitch, roll in itertools.product(YAWS, PITCHES, ROLLS):
        scale = float(rng.uniform(40, 400))
        shift = rng.uniform(0, 1000, 2)
        points = project(face, rotation_matrix(yaw, pitch, roll), scale, shift)
        pose = estimate_pose(points)
        assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=1.0)
        assert pose.scale == pytest.approx(scale, rel=1e-6) and pose.residual < 1e-6


def test_noisy_synthetic_faces_stay_within_1_degree() -> None:
    """Landmark noise of 1% of the eye distance (a good alignment's) moves the angles little."""
    face = mean_face()
    rng = np.random.default_rng(1)
    for yaw, pitch, roll in itertools.product(range(-60, 61, 20), (-20, 0, 15), (-20, 10)):
        points = project(face, rotation_matrix(yaw, pitch, roll), 100.0, (300.0, 200.0))
        pose = estimate_pose(points + rng.normal(0.0, 1.0, points.shape))
        assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=1.0)


def test_a_photo_and_its_mirror_image_have_opposite_yaw_and_roll_and_equal_pitch(
    photos: list[Sample],
) -> None:
    yaws = []
    for sample in photos:
        width = read_gray(sample.image_path).shape[1]
        mirrored = mirror_landmarks(sample.landmarks, width)  # the mirror image's annotation
        a, b = estimate_pose(sample.landmarks), estimate_pose(mirrored)
        assert b.yaw == pytest.approx(-a.yaw, abs=2.0), sample.name
        assert b.roll == pytest.approx(-a.roll, abs=2.0), sample.name
        assert b.pitch == pytest.approx(a.pitch, abs=2.0), sample.name
        yaws.append(abs(a.yaw))
    assert max(yaws) > 10.0  # the photos include turned faces, not only frontal ones


@pytest.mark.parametrize("angle", [-40.0, -15.0, 10.0, 30.0])
def test_rotating_a_photo_in_plane_changes_roll_by_that_angle(
    photos: list[Sample], angle: float
) -> None:
    for sample in photos:
        image = read_gray(sample.image_path)
        height, width = image.shape
        # cv2's positive angle turns the image counter-clockwise as displayed: ours is clockwise.
        turn = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), -angle, 1.0)
        rotated_image = cv2.warpAffine(image, turn, (width, height))
        rotated = apply_affine(turn, sample.landmarks)
        assert rotated_image.shape == image.shape
        before, after = estimate_pose(sample.landmarks), estimate_pose(rotated)
        change = (after.roll - before.roll + 180.0) % 360.0 - 180.0
        assert change == pytest.approx(angle, abs=2.0), sample.name
        assert after.yaw == pytest.approx(before.yaw, abs=2.0)
        assert after.pitch == pytest.approx(before.pitch, abs=2.0)


def test_the_3d_face_is_symmetric_in_its_documented_frame_with_its_source_stated() -> None:
    face = mean_face()
    mirrored = face[list(MIRROR_PERMUTATION)] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(face, mirrored, atol=1e-4)
    right, left = OUTER_EYE_CORNERS
    assert face[left, 0] > face[right, 0]  # X toward the subject's left
    assert np.linalg.norm(face[left] - face[right]) == pytest.approx(1.0, abs=1e-4)
    assert face[NOSE_TIP, 2] == face[:, 2].min()  # the nose tip nearest the camera
    corners = [right, left, *MOUTH_CORNERS]
    assert np.ptp(face[corners, 2]) < 1e-3  # the eye-mouth plane at one depth
    assert face[MOUTH_CORNERS[0], 1] > face[right, 1]  # Y down
    document = json.loads(MEAN_FACE_PATH.read_text())
    assert "300-W" in document["source"] and "non-commercial" in document["licence"]
    # A plausible face: the nose tip about half an eye distance in front of the eye corners.
    depth = face[corners, 2].mean() - face[NOSE_TIP, 2]
    assert 0.3 < depth < 0.8 and math.isfinite(document["rms_residual"])


def test_bad_landmarks_are_refused() -> None:
    with pytest.raises(ValueError, match="68 finite"):
        estimate_pose(np.zeros((5, 2)))
    points = project(mean_face(), np.eye(3), 10.0, (0.0, 0.0))
    points[3, 0] = np.nan
    with pytest.raises(ValueError, match="68 finite"):
        estimate_pose(points)
