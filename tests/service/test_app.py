"""The whole service in a real uvicorn process on a loopback port (``python -m service``).

Landmarks are compared with training's own path (cv2 decode, training crop,
plain onnxruntime) on real 300-W test images, through uvicorn. Bad input and
failing parts are tested in-process (``test_app_errors``, ``test_app_failures``,
``test_app_backpressure``).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps
from prometheus_client.parser import text_string_to_metric_families
from service_support import MAIN_SETTINGS, reference_landmarks, reference_session

from bench.serving import ServiceProcess
from model.geometry import bounding_box
from training.dataset import Sample, read_gray
from training.dataset import to_gray as training_gray

pytestmark = pytest.mark.process
TOLERANCE_PX = 0.01  # the service rounds to 0.001 px; batching changes float32 sums slightly


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> ort.InferenceSession:
    return reference_session(tiny_model)


def post_file(
    service: ServiceProcess, data: bytes, boxes: Any = None, name: str = "face.jpg"
) -> httpx.Response:
    fields = {} if boxes is None else {"boxes": json.dumps(boxes)}
    return service.client.post("/align", files={"image": (name, data)}, data=fields)


def landmarks_of(response: httpx.Response, face: int = 0) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["faces"][face]["landmarks"], dtype=np.float64)


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return training_gray(rgb[..., ::-1])


def test_live_and_ready(service: ServiceProcess) -> None:
    assert service.client.get("/health/live").json() == {"status": "alive"}
    ready = service.client.get("/health/ready").json()
    assert ready["status"] == "ready"
    assert ready["model"] == {"name": "tiny", "version": "0.0.1"}
    assert ready["provider"] == "cpu"
    assert ready["max_batch_size"] == MAIN_SETTINGS["max_batch_size"]
    assert ready["mirror_average"] is False
    assert ready["warmup_batch_sizes"] == [MAIN_SETTINGS["max_batch_size"]]  # a full batch


def test_landmarks_follow_trainings_path_on_real_images(
    service: ServiceProcess, test_faces: list[Sample], reference: ort.InferenceSession
) -> None:
    for sample in test_faces:
        box = sample.detector_box.tolist()
        response = post_file(service, sample.image_path.read_bytes(), [box])
        body = response.json()
        gray = read_gray(sample.image_path)
        assert body["image"] == {"width": gray.shape[1], "height": gray.shape[0]}
        assert body["model"] == {"name": "tiny", "version": "0.0.1"}
        (face,) = body["faces"]
        assert face["box"] == pytest.approx(box)
        assert face["box_source"] == "request" and face["score"] is None
        expected = reference_landmarks(reference, gray, sample.detector_box)
        assert np.abs(landmarks_of(response) - expected).max() < TOLERANCE_PX
        timings = face["timings"]
        assert timings["inference_ms"] > 0 and timings["decode_ms"] > 0
        assert timings["total_ms"] >= timings["queue_wait_ms"] + timings["inference_ms"]


def test_json_base64_gives_the_multipart_answer(
    service: ServiceProcess, test_faces: list[Sample]
) -> None:
    sample = test_faces[1]
    data = sample.image_path.read_bytes()
    box = sample.detector_box.tolist()
    as_file = landmarks_of(post_file(service, data, [box]))
    for image in (
        base64.b64encode(data).decode(),
        "data:image/jpeg;base64," + base64.b64encode(data).decode(),
    ):
        as_json = service.client.post("/align", json={"image": image, "boxes": [box]})
        assert np.array_equal(landmarks_of(as_json), as_file)


def test_several_faces_in_one_request_keep_their_order(
    service: ServiceProcess, test_faces: list[Sample], reference: ort.InferenceSession
) -> None:
    sample = test_faces[2]
    gray = read_gray(sample.image_path)
    base = sample.detector_box
    boxes = [base, base + np.array([-12, 5, -12, 5]), base * np.array([1.0, 1.0, 1.1, 1.1])]
    response = post_file(service, sample.image_path.read_bytes(), [b.tolist() for b in boxes])
    assert len(response.json()["faces"]) == 3
    for i, box in enumerate(boxes):
        assert (
            np.abs(landmarks_of(response, i) - reference_landmarks(reference, gray, box)).max()
            < TOLERANCE_PX
        )


def test_without_boxes_the_papers_two_pass_procedure_runs(
    service: ServiceProcess, test_faces: list[Sample], reference: ort.InferenceSession
) -> None:
    sample = test_faces[0]
    gray = read_gray(sample.image_path)
    height, width = gray.shape
    half = 0.46 * height / 2
    centre = ((width - 1) / 2, (height - 1) / 2)
    first_box = np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
    first = reference_landmarks(reference, gray, first_box)
    second_box = bounding_box(first)
    expected = reference_landmarks(reference, gray, second_box)
    response = post_file(service, sample.image_path.read_bytes())
    (face,) = response.json()["faces"]
    assert face["box_source"] == "whole_image"
    assert face["box"] == pytest.approx(second_box.tolist(), abs=1e-3)
    assert np.abs(landmarks_of(response) - expected).max() < TOLERANCE_PX


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photos_get_landmarks_in_the_displayed_orientation(
    service: ServiceProcess,
    test_faces: list[Sample],
    reference: ort.InferenceSession,
    orientation: int,
) -> None:
    sample = test_faces[3]
    displayed = Image.open(sample.image_path).convert("RGB")
    # The stored pixels that display as ``displayed`` under this orientation.
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    stored = displayed.transpose(undo[orientation])
    exif = stored.getexif()
    exif[0x0112] = orientation
    data = encode(stored, "PNG", exif=exif)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).tobytes() == displayed.tobytes()
    box = sample.detector_box
    response = post_file(service, data, [box.tolist()], name="rotated.png")
    assert response.json()["image"] == {"width": displayed.width, "height": displayed.height}
    expected = reference_landmarks(reference, gray_of(np.asarray(displayed)), box)
    assert np.abs(landmarks_of(response) - expected).max() < TOLERANCE_PX
    # The landmarks sit on the face: near the ground truth's extent, in displayed coordinates.
    assert np.abs(bounding_box(landmarks_of(response)) - bounding_box(sample.landmarks)).max() < 80


def mode_variants(rgb: np.ndarray) -> dict[str, tuple[bytes, np.ndarray]]:
    """The same picture as each pixel mode the issue names: (file, expected grayscale)."""
    gray = gray_of(rgb)
    alpha = np.full_like(gray, 128)
    palette = Image.fromarray(rgb, "RGB").quantize(colors=256)
    return {
        "L": (encode(Image.fromarray(gray, "L")), gray),
        "LA": (encode(Image.fromarray(np.dstack([gray, alpha]), "LA")), gray),
        "RGBA": (encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")), gray),
        "P": (encode(palette), gray_of(np.asarray(palette.convert("RGB")))),
        "CMYK": (encode(Image.fromarray(rgb, "RGB").convert("CMYK"), "TIFF"), gray),
        "I;16": (encode(Image.fromarray(gray.astype(np.uint16) * 257)), gray),
        "I": (encode(Image.fromarray(gray.astype(np.int32) * 257), "TIFF"), gray),
    }


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I"])
def test_grayscale_alpha_palette_cmyk_and_16_bit_images_are_handled(
    service: ServiceProcess,
    test_faces: list[Sample],
    reference: ort.InferenceSession,
    mode: str,
) -> None:
    sample = test_faces[4]
    rgb = np.asarray(Image.open(sample.image_path).convert("RGB"))
    data, gray = mode_variants(rgb)[mode]
    response = post_file(service, data, [sample.detector_box.tolist()], name="face.img")
    expected = reference_landmarks(reference, gray, sample.detector_box)
    assert np.abs(landmarks_of(response) - expected).max() < TOLERANCE_PX


def scrape(service: ServiceProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = service.client.get("/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_move_as_requests_come(service: ServiceProcess, test_faces: list[Sample]) -> None:
    sample = test_faces[0]
    data = sample.image_path.read_bytes()
    box = sample.detector_box.tolist()
    before = scrape(service)
    for _ in range(3):
        assert post_file(service, data, [box, box]).status_code == 200
    assert post_file(service, b"no image here" * 10, [box]).status_code == 400
    after = scrape(service)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("dan_requests_total", route="/align", status="200") == 3
    assert delta("dan_requests_total", route="/align", status="400") == 1
    assert delta("dan_request_duration_seconds_count", route="/align") == 4
    assert delta("dan_faces_aligned_total") == 6
    assert delta("dan_errors_total", reason="not_an_image") == 1
    assert delta("dan_queue_wait_seconds_count") == 6
    assert 3 <= delta("dan_batch_size_count") <= 6
    assert delta("dan_batch_size_sum") == 6
    assert delta("dan_inference_duration_seconds_count") == delta("dan_batch_size_count")
    assert delta("dan_batches_total", outcome="ok") == delta("dan_batch_size_count")
    assert delta("dan_decode_duration_seconds_count") == 3
    assert (
        after[
            (
                "dan_model_info",
                (
                    ("mirror_average", "false"),
                    ("name", "tiny"),
                    ("precision", "float32"),
                    ("provider", "cpu"),
                    ("version", "0.0.1"),
                ),
            )
        ]
        == 1
    )
    assert after[("dan_ready", ())] == 1
    assert after[("dan_queue_depth", ())] == 0
    assert after[("dan_queue_capacity", ())] == 64
    assert after[("dan_requests_in_flight", ())] == 1  # the scrape itself


def test_openapi_documents_both_request_forms_and_every_error(service: ServiceProcess) -> None:
    schema = service.client.get("/openapi.json").json()
    align = schema["paths"]["/align"]["post"]
    content = align["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["multipart/form-data"]["schema"]["required"] == ["image"]
    assert content["application/json"]["schema"]["required"] == ["image"]
    assert set(align["responses"]) == {
        *("200", "400", "401", "408", "413", "415", "422", "500", "503", "504")
    }
    assert "Retry-After" in align["responses"]["503"]["headers"]
    assert "queue_full" in align["responses"]["503"]["description"]
    assert "queue_wait_too_long" in align["responses"]["503"]["description"]
    face = schema["components"]["schemas"]["Face"]
    assert face["properties"]["landmarks"]["minItems"] == 68
    assert set(face["properties"]["box_source"]["enum"]) == {
        "request",
        "detector",
        "whole_image",
        "track",
    }
    assert "/health/ready" in schema["paths"] and "/metrics" in schema["paths"]
