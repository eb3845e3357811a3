"""HTTP details of a real server (issue 13, class 5): 405 with Allow, no redirects built from
the Host header, a multipart body cut short, the configured limits named, ``boxes: null`` in
both encodings, and an OpenAPI schema as strict as the service.

Against ``python -m service`` on a loopback port (the session's main test server).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from lying_images import encode, png_header_only
from PIL import Image
from raw_http import MULTIPART_TYPE, connect, multipart, read_answer, request_head
from service_support import MAIN_SETTINGS

from training.dataset import Sample


def json_error(response: Any, status: int, reason: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == reason, response.text
    detail: str = response.json()["detail"]
    return detail


def test_a_wrong_method_is_405_with_an_allow_header(service: Any) -> None:
    answer = service.client.get("/align")
    json_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "POST"
    answer = service.client.post("/health/live")
    json_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "GET"


def test_no_redirect_is_built_from_the_host_header(service: Any) -> None:
    for path in ("/align/", "/health/live/", "/metrics/", "/docs/"):
        answer = service.client.request(
            "GET" if path != "/align/" else "POST", path, headers={"Host": "evil.example"}
        )
        json_error(answer, 404, "not_found")
        assert "location" not in answer.headers


def test_a_multipart_body_cut_short_is_malformed_body(
    service: Any, test_faces: list[Sample]
) -> None:
    sample = test_faces[0]
    box = sample.detector_box.tolist()
    body = multipart(sample.image_path.read_bytes(), json.dumps([box]))
    for cut in (len(body) - 4, len(body) - 40, len(body) // 2):
        with connect(service.port) as sock:
            sock.sendall(request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, cut))
            sock.sendall(body[:cut])  # all the declared length, short of the closing boundary
            status, _, payload = read_answer(sock)
        assert status == 400, payload
        assert json.loads(payload)["error"] == "malformed_body"
        assert b"cut short" in payload


def test_size_errors_name_the_configured_limits(service: Any) -> None:
    limit = MAIN_SETTINGS["max_image_pixels"]
    for width, height in ((3000, 2000), (20_000, 20_000)):  # ours; past Pillow's own bound
        answer = service.client.post(
            "/align", files={"image": ("big.png", png_header_only(width, height))}
        )
        detail = json_error(answer, 413, "too_many_pixels")
        assert f"the limit is {limit} pixels" in detail
        assert "178956970" not in detail and "decompression bomb" not in detail.lower()
    big = encode(Image.fromarray(np.full((4, 4), 7, np.uint8)), "PNG") + bytes(1_100_000)
    detail = json_error(
        service.client.post("/align", files={"image": ("f.png", big)}), 413, "image_too_large"
    )
    assert f"the limit is {MAIN_SETTINGS['max_image_bytes']} bytes" in detail


def test_boxes_null_means_no_boxes_in_both_encodings(
    service: Any, test_faces: list[Sample]
) -> None:
    data = test_faces[0].image_path.read_bytes()
    by_json = service.client.post(
        "/align", json={"image": base64.b64encode(data).decode(), "boxes": None}
    )
    by_form = service.client.post(
        "/align", files={"image": ("f.jpg", data)}, data={"boxes": "null"}
    )
    left_out = service.client.post("/align", files={"image": ("f.jpg", data)})
    for answer in (by_json, by_form, left_out):
        assert answer.status_code == 200, answer.text
        assert answer.json()["faces"][0]["box_source"] == "whole_image"
    points = [np.asarray(a.json()["faces"][0]["landmarks"]) for a in (by_json, by_form, left_out)]
    assert np.abs(points[0] - points[1]).max() < 0.01
    assert np.abs(points[0] - points[2]).max() < 0.01


def test_the_openapi_schema_is_as_strict_as_the_service(service: Any) -> None:
    schema = service.client.get("/openapi.json").json()
    body = schema["paths"]["/align"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["minLength"] == 1
    request = body["application/json"]["schema"]
    assert request["properties"]["image"]["minLength"] == 1
    boxes = next(s for s in request["properties"]["boxes"]["anyOf"] if s.get("type") == "array")
    assert boxes["minItems"] == 1
    for coordinate in boxes["items"]["prefixItems"]:
        assert coordinate["type"] == "number"
        assert coordinate["minimum"] == -1e9 and coordinate["maximum"] == 1e9  # finite
    # The service refuses what the schema refuses.
    empty = service.client.post("/align", json={"image": "", "boxes": None})
    json_error(empty, 400, "empty_image")
    no_boxes = service.client.post("/align", json={"image": "aGVsbG8=", "boxes": []})
    json_error(no_boxes, 422, "invalid_boxes")
    far = service.client.post("/align", json={"image": "aGVsbG8=", "boxes": [[0, 0, 1e10, 5]]})
    json_error(far, 422, "invalid_boxes")
