"""service.detectors.centerface: the real CenterFace weights on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from group_photo import group_photo

from service.detectors.calibration import box_iou
from service.detectors.centerface import (
    INPUT_NAME,
    CenterFace,
    load_weights,
    non_maximum_suppression,
)
from service.initialisation import FaceDetector
from training.dataset import Sample, read_gray


@pytest.fixture(scope="module")
def centerface() -> CenterFace:
    return CenterFace(threshold=0.5, threads=1)


def test_centerface_is_a_face_detector(centerface: CenterFace) -> None:
    detector: FaceDetector = centerface
    assert detector.detect(np.zeros((48, 64), dtype=np.uint8)) == []


def test_the_shipped_weights_load_with_free_image_size() -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(load_weights(), providers=["CPUExecutionProvider"])
    (image,) = [i for i in session.get_inputs() if i.name == INPUT_NAME]
    assert image.shape[0] == "batch" and image.shape[2:] == ["height", "width"]
    outputs = session.run(None, {INPUT_NAME: np.zeros((1, 3, 64, 96), dtype=np.float32)})
    assert outputs[0].shape == (1, 1, 16, 24)  # stride 4


def test_one_face_on_a_real_photo_with_keypoints_in_place(
    centerface: CenterFace, test_faces: list[Sample]
) -> None:
    for sample in test_faces:
        detections = centerface.detect(read_gray(sample.image_path))
        assert len(detections) >= 1
        best = detections[0]
        assert best.score >= 0.5
        # The raw box overlaps the 300-W box (it reaches higher, over the forehead).
        assert box_iou(best.box, sample.box("file"))[0, 0] > 0.5
        assert best.keypoints is not None and best.keypoints.shape == (5, 2)
        eyes = [sample.landmarks[36:42].mean(axis=0), sample.landmarks[42:48].mean(axis=0)]
        truth = np.stack([*eyes, sample.landmarks[30], sample.landmarks[48], sample.landmarks[54]])
        inter_ocular = np.linalg.norm(sample.landmarks[45] - sample.landmarks[36])
        # Eyes, nose tip and mouth corners within a third of the eye distance.
        assert np.linalg.norm(best.keypoints - truth, axis=1).max() < inter_ocular / 3


def test_every_face_of_a_group_photo_best_score_first(
    centerface: CenterFace, test_faces: list[Sample]
) -> None:
    photo = group_photo(test_faces[:3], [330, 250, 170])
    detections = centerface.detect(photo.gray)
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    iou = box_iou(photo.boxes, np.array([d.box for d in detections]))
    assert (iou.max(axis=1) > 0.5).all(), iou  # every face found...
    assert len(detections) == 3  # ... and nothing else


def test_large_images_are_shrunk_and_boxes_come_back_in_image_pixels(
    centerface: CenterFace, test_faces: list[Sample]
) -> None:
    photo = group_photo(test_faces[:3], [330, 250, 170])
    # Twice as large: detected at 640 px, reported in the 2000 x 840 image's pixels.
    big = np.repeat(np.repeat(photo.gray, 2, axis=0), 2, axis=1)
    boxes = np.array([d.box for d in centerface.detect(big)])
    expected = (photo.boxes + 0.5) * 2 - 0.5
    assert (box_iou(expected, boxes).max(axis=1) > 0.5).all()


def test_blank_and_noise_images_have_no_face(centerface: CenterFace) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    assert centerface.detect(np.full((480, 640), 128, dtype=np.uint8)) == []
    assert centerface.detect(noise) == []


def test_non_maximum_suppression_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [1.0, 1, 11, 11], [20.0, 0, 30, 10], [0.0, 0, 10, 3]])
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    # 1 beats 0 (IoU 0.68); 3 overlaps 1 by 0.21 < 0.3 and stays; 2 overlaps nothing.
    assert non_maximum_suppression(boxes, scores, 0.3) == [1, 3, 2]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold must be in"):
        CenterFace(threshold=1.0)
    with pytest.raises(ValueError, match="max_side must be at least 32"):
        CenterFace(max_side=16)
