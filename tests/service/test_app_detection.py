"""Requests without boxes through a real ``python -m service`` with the CenterFace detector.

Detected faces come best score first (at most DAN_MAX_FACES), each with
``box_source`` = ``detector`` and its box mapped to the model's convention; the
landmarks are those of training's path from that box; an image without a face
gets 200 with an empty ``faces`` list; detection time shows in the answer and
in ``/metrics``. Finding faces needs real photos (``real_test_faces``: skipped
without the 300-W data); the rest runs on synthetic faces too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from encoded_images import png
from group_photo import group_photo
from service_support import reference_landmarks, reference_session, serving

from bench.serving import ServiceProcess
from service.detectors.calibration import box_iou
from service.detectors.centerface import CenterFace
from training.dataset import Sample, read_gray

pytestmark = pytest.mark.process
TOLERANCE_PX = 0.01
MAX_FACES = 2
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def detecting_service(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with serving(
        tmp_path_factory.mktemp("detecting-service"),
        model_path=tiny_model,
        detector="centerface",
        detector_threshold=THRESHOLD,
        max_faces=MAX_FACES,
        max_batch_size=4,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def centerface() -> CenterFace:
    # The graph the service's default (DAN_DETECTOR_PRECISION=auto) takes on this machine.
    return CenterFace(threshold=THRESHOLD, threads=1, precision="auto")


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> ort.InferenceSession:
    return reference_session(tiny_model)


def align(service: ServiceProcess, data: bytes, boxes: Any = None) -> dict[str, Any]:
    fields = {} if boxes is None else {"boxes": json.dumps(boxes)}
    response = service.client.post("/align", files={"image": ("face.png", data)}, data=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_photo_without_boxes_gets_the_detected_face(
    detecting_service: ServiceProcess,
    centerface: CenterFace,
    reference: ort.InferenceSession,
    real_test_faces: list[Sample],
) -> None:
    for sample in real_test_faces[:3]:
        gray = read_gray(sample.image_path)
        (face,) = align(detecting_service, sample.image_path.read_bytes())["faces"]
        best = centerface.detect(gray).faces[0]
        expected_box = centerface.box_mapping.apply(best.box)
        assert face["box_source"] == "detector"
        assert face["score"] == pytest.approx(best.score, abs=1e-5)
        assert face["box"] == pytest.approx(expected_box.tolist(), abs=1e-3)
        # The mapped box is the model's convention: it overlaps the 300-W box well.
        assert box_iou(expected_box, sample.box("file"))[0, 0] > 0.7
        landmarks = np.asarray(face["landmarks"])
        assert np.abs(landmarks - reference_landmarks(reference, gray, expected_box)).max() < (
            TOLERANCE_PX
        )
        assert face["timings"]["detect_ms"] > 0


def test_a_group_photo_gives_the_best_faces_first_up_to_max_faces(
    detecting_service: ServiceProcess, centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    photo = group_photo(real_test_faces[:3], [330, 250, 170])
    faces = align(detecting_service, png(photo.gray))["faces"]
    detected = centerface.detect(photo.gray).faces
    assert len(detected) == 3 > MAX_FACES == len(faces)
    scores = [f["score"] for f in faces]
    assert scores == pytest.approx([d.score for d in detected[:MAX_FACES]], abs=1e-5)
    assert scores[0] >= scores[1]
    assert all(f["box_source"] == "detector" for f in faces)
    iou = box_iou(np.array([f["box"] for f in faces]), photo.boxes)
    assert (iou.max(axis=1) > 0.5).all()
    assert len(set(iou.argmax(axis=1).tolist())) == MAX_FACES  # two different faces


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_an_image_without_a_face_gets_an_empty_list(
    detecting_service: ServiceProcess, kind: str
) -> None:
    gray = (
        np.full((480, 640), 128, dtype=np.uint8)
        if kind == "blank"
        else np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    )
    body = align(detecting_service, png(gray))
    assert body["faces"] == []
    assert body["image"] == {"width": 640, "height": 480}


def test_given_boxes_skip_the_detector(
    detecting_service: ServiceProcess, test_faces: list[Sample]
) -> None:
    sample = test_faces[0]
    box = sample.box("file").tolist()
    (face,) = align(detecting_service, sample.image_path.read_bytes(), [box])["faces"]
    assert face["box_source"] == "request" and face["score"] is None
    assert face["timings"]["detect_ms"] is None


def detections_counted(service: ServiceProcess) -> float:
    for line in service.client.get("/metrics").text.splitlines():
        if line.startswith("dan_detection_duration_seconds_count"):
            return float(line.split()[-1])
    raise AssertionError("dan_detection_duration_seconds_count not in /metrics")


def test_detection_time_is_in_the_metrics(
    detecting_service: ServiceProcess, test_faces: list[Sample]
) -> None:
    before = detections_counted(detecting_service)
    align(detecting_service, test_faces[0].image_path.read_bytes())
    align(
        detecting_service,
        test_faces[0].image_path.read_bytes(),
        [test_faces[0].box("file").tolist()],
    )
    assert detections_counted(detecting_service) == before + 1


def test_openapi_documents_the_detection_timing(detecting_service: ServiceProcess) -> None:
    schema = httpx.get(f"{detecting_service.url}/openapi.json").json()
    timings = schema["components"]["schemas"]["FaceTimings"]["properties"]
    assert "detect_ms" in timings
