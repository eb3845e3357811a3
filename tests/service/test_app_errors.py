"""Every bad request in-process gets its status and JSON reason, and changes nothing.

The app is built by ``create_app`` around one engine on the tiny model (the
composition root: the same engine serves every case); each case starts the
app, sends one bad request through the ASGI transport, then a good one on a
real 300-W test face that must still get training's own landmarks.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from app_harness import ControlledEngine, serve, settings_for
from PIL import Image
from service_support import MAIN_SETTINGS, reference_landmarks, reference_session

from service.config import Settings
from training.dataset import Sample, read_gray

TOLERANCE_PX = 0.01  # the service rounds to 0.001 px; batching changes float32 sums slightly


@pytest.fixture(scope="module")
def settings(tiny_model: Path) -> Settings:
    return settings_for(tiny_model, **MAIN_SETTINGS)


@pytest.fixture(scope="module")
def engine(settings: Settings) -> ControlledEngine:
    return ControlledEngine(settings)


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> ort.InferenceSession:
    return reference_session(tiny_model)


async def post_file(
    client: httpx.AsyncClient,
    data: bytes,
    boxes: Any = None,
    name: str = "face.jpg",
    raw_boxes: str | None = None,
) -> httpx.Response:
    fields = {}
    if raw_boxes is not None:
        fields["boxes"] = raw_boxes
    elif boxes is not None:
        fields["boxes"] = json.dumps(boxes)
    return await client.post("/align", files={"image": (name, data)}, data=fields)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def noise_png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))


BadRequest = Callable[[httpx.AsyncClient, bytes, list[float]], Awaitable[httpx.Response]]

BAD_REQUESTS: list[tuple[str, BadRequest, int, str]] = [
    (
        "not an image",
        lambda c, d, b: post_file(c, b"%PDF-1.4 this is no image" * 40, [b]),
        400,
        "not_an_image",
    ),
    ("truncated", lambda c, d, b: post_file(c, d[: len(d) // 3], [b]), 400, "corrupt_image"),
    ("empty upload", lambda c, d, b: post_file(c, b"", [b]), 400, "empty_image"),
    (
        "empty base64",
        lambda c, d, b: c.post("/align", json={"image": ""}),
        400,
        "empty_image",
    ),
    (
        "over the byte limit",
        lambda c, d, b: post_file(c, noise_png(700, 700), [b]),
        413,
        "image_too_large",
    ),
    (
        "body over the limit",
        lambda c, d, b: c.post(
            "/align",
            content=b"{" + b" " * 2_600_000 + b"}",
            headers={"content-type": "application/json"},
        ),
        413,
        "body_too_large",
    ),
    (
        "decompression bomb",
        lambda c, d, b: post_file(c, encode(Image.new("L", (4000, 4000))), [b]),
        413,
        "too_many_pixels",
    ),
    (
        "unsupported content type",
        lambda c, d, b: c.post("/align", content=d, headers={"content-type": "image/jpeg"}),
        415,
        "unsupported_media_type",
    ),
    (
        "float image",
        lambda c, d, b: post_file(c, encode(Image.new("F", (50, 50)), "TIFF"), [b]),
        415,
        "unsupported_image",
    ),
    (
        "boxes not JSON",
        lambda c, d, b: post_file(c, d, raw_boxes="[[1, 2, 3, 4]"),
        422,
        "invalid_boxes",
    ),
    ("box of 3 numbers", lambda c, d, b: post_file(c, d, [[1, 2, 3]]), 422, "invalid_boxes"),
    (
        "box of strings",
        lambda c, d, b: post_file(c, d, [["a", "b", "c", "d"]]),
        422,
        "invalid_boxes",
    ),
    (
        "inverted box",
        lambda c, d, b: post_file(c, d, [[b[2], b[1], b[0], b[3]]]),
        422,
        "invalid_boxes",
    ),
    (
        "box outside",
        lambda c, d, b: post_file(c, d, [[5000, 5000, 5100, 5100]]),
        422,
        "invalid_boxes",
    ),
    ("empty box list", lambda c, d, b: post_file(c, d, []), 422, "invalid_boxes"),
    (
        "NaN box",
        lambda c, d, b: c.post(
            "/align",
            content=b'{"image": "' + base64.b64encode(d) + b'", "boxes": [[1, 2, 3, NaN]]}',
            headers={"content-type": "application/json"},
        ),
        422,
        "invalid_boxes",
    ),
    ("too many faces", lambda c, d, b: post_file(c, d, [b] * 9), 422, "too_many_faces"),
    (
        "no image field",
        lambda c, d, b: c.post("/align", files={"picture": ("a.jpg", d)}),
        422,
        "invalid_request",
    ),
    (
        "invalid base64",
        lambda c, d, b: c.post("/align", json={"image": "not base64!"}),
        422,
        "invalid_request",
    ),
    (
        "malformed JSON",
        lambda c, d, b: c.post(
            "/align", content=b'{"image": ', headers={"content-type": "application/json"}
        ),
        400,
        "malformed_body",
    ),
    ("unknown route", lambda c, d, b: c.get("/aling"), 404, "not_found"),
    ("wrong method", lambda c, d, b: c.get("/align"), 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_input_gets_a_clear_json_error_and_changes_nothing(
    settings: Settings,
    engine: ControlledEngine,
    test_faces: list[Sample],
    reference: ort.InferenceSession,
    make: BadRequest,
    status: int,
    reason: str,
) -> None:
    sample = test_faces[0]
    data = sample.image_path.read_bytes()
    box = sample.detector_box.tolist()

    async def main() -> tuple[httpx.Response, httpx.Response, float]:
        async with serve(settings, engine) as served:
            bad = await make(served.client, data, box)
            good = await post_file(served.client, data, [box])
            counted = await served.metric("dan_errors_total", reason=reason)
        return bad, good, counted

    response, good, counted = asyncio.run(main())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == reason
    assert len(body["detail"]) > 10
    if reason == "too_many_faces":
        assert "at most 8 faces" in body["detail"]
    assert counted == 1
    assert good.status_code == 200, good.text
    expected = reference_landmarks(reference, read_gray(sample.image_path), sample.detector_box)
    got = np.asarray(good.json()["faces"][0]["landmarks"])
    assert np.abs(got - expected).max() < TOLERANCE_PX
