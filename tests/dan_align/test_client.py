"""dan_align.Client and AsyncClient against a real service, and their retries and errors.

The real service (``conftest.align_service``: the released model, CenterFace) answers the
photos; the retry rule and the headers sent are checked on httpx's mock transport, where
the test decides what the service answers.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from client_support import API_KEY, Service, free_port
from PIL import Image

from dan_align import (
    AsyncClient,
    Client,
    ConnectionFailedError,
    InputError,
    ServiceError,
    ServiceUnavailableError,
)
from dan_align.client import retry_after_s

TOLERANCE_PX = 0.01  # the service rounds to 0.001 px; batching changes float32 sums slightly


def raw_answer(service: Service, photo: Path, boxes: Any = None) -> dict[str, Any]:
    data = {} if boxes is None else {"boxes": json.dumps(boxes)}
    response = service.client.post(
        "/align", files={"image": (photo.name, photo.read_bytes())}, data=data
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.process
def test_a_path_gives_the_services_answer_typed(align_service: Service, photos: list[Path]) -> None:
    expected = raw_answer(align_service, photos[0])
    with Client(align_service.url) as client:
        result = client.align(photos[0])
    assert len(result.faces) == len(expected["faces"]) == 1
    face, want = result.faces[0], expected["faces"][0]
    np.testing.assert_allclose(face.landmarks, want["landmarks"], atol=TOLERANCE_PX)
    np.testing.assert_allclose(face.box, want["box"], atol=TOLERANCE_PX)
    assert face.box_source == "detector" and face.score is not None and face.timings is not None
    assert result.image.width == expected["image"]["width"]
    assert result.model.name == expected["model"]["name"]
    assert result.raw["faces"][0]["landmarks"] == face.landmarks.tolist()


@pytest.mark.process
def test_bytes_pil_and_numpy_give_the_same_landmarks(
    align_service: Service, photos: list[Path]
) -> None:
    photo = photos[1]
    with Image.open(photo) as opened:
        rgb = opened.convert("RGB")
    with Client(align_service.url) as client:
        results = [
            client.align(photo),
            client.align(photo.read_bytes()),
            client.align(rgb),
            client.align(np.asarray(rgb)),
            client.align(np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])),  # BGR: same gray
        ]
    first = results[0].faces[0].landmarks
    for result in results[1:]:
        np.testing.assert_allclose(result.faces[0].landmarks, first, atol=TOLERANCE_PX)


@pytest.mark.process
def test_boxes_are_sent(align_service: Service, photos: list[Path]) -> None:
    box = [124.6, 126.2, 255.9, 251.4]
    expected = raw_answer(align_service, photos[0], [box])
    with Client(align_service.url) as client:
        listed = client.align(photos[0], boxes=[box])
        array = client.align(photos[0], boxes=np.array([box]))
    for result in (listed, array):
        (face,) = result.faces
        assert face.box_source == "request"
        np.testing.assert_allclose(face.box, box)
        np.testing.assert_allclose(
            face.landmarks, expected["faces"][0]["landmarks"], atol=TOLERANCE_PX
        )


@pytest.mark.process
def test_an_error_answer_carries_the_services_error_and_detail(
    align_service: Service, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    expected = align_service.client.post(
        "/align", files={"image": ("notes.txt", text.read_bytes())}
    )
    assert expected.status_code == 400
    with Client(align_service.url) as client, pytest.raises(ServiceError) as caught:
        client.align(text)
    assert caught.value.status == 400
    assert caught.value.error == expected.json()["error"] == "not_an_image"
    assert caught.value.detail == expected.json()["detail"]
    assert "not_an_image" in str(caught.value)


@pytest.mark.process
def test_bad_boxes_are_refused_before_sending(align_service: Service, photos: list[Path]) -> None:
    with Client(align_service.url) as client, pytest.raises(InputError, match="shape"):
        client.align(photos[0], boxes=[[1, 2, 3]])


@pytest.mark.process
def test_the_async_client_aligns_concurrently(align_service: Service, photos: list[Path]) -> None:
    async def align_all() -> list[Any]:
        async with AsyncClient(align_service.url) as client:
            assert await client.ready()
            return list(await asyncio.gather(*(client.align(p) for p in photos)))

    results = asyncio.run(align_all())
    with Client(align_service.url) as client:
        assert client.ready()
        for photo, result in zip(photos, results, strict=True):
            np.testing.assert_allclose(
                result.faces[0].landmarks,
                client.align(photo).faces[0].landmarks,
                atol=TOLERANCE_PX,
            )


def test_an_unreachable_service_is_an_error_in_words(photos: list[Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout=5) as client:
        assert not client.ready()
        with pytest.raises(ConnectionFailedError, match="could not reach the service at"):
            client.align(photos[0])


@pytest.mark.process
def test_the_api_key_opens_a_service_that_wants_one(
    keyed_service: Service, photos: list[Path]
) -> None:
    with Client(keyed_service.url, api_key=API_KEY) as client:
        assert len(client.align(photos[0]).faces) == 1
    with Client(keyed_service.url) as client, pytest.raises(ServiceError) as caught:
        client.align(photos[0])
    assert (caught.value.status, caught.value.error) == (401, "unauthorized")


# -- retries and headers, on a mock transport ------------------------------------------------

ANSWER = {
    "image": {"width": 10, "height": 10},
    "model": {"name": "dan-300w", "version": "1.1.0"},
    "faces": [],
}
BUSY = {"error": "queue_full", "detail": "64 faces are waiting"}


def scripted(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handle)


def busy(retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(503, json=BUSY, headers=headers)


def test_503_is_retried_after_retry_after() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    transport = scripted([busy("2"), busy("1"), httpx.Response(200, json=ANSWER)], seen)
    with Client("http://svc", transport=transport, sleep=waits.append) as client:
        assert client.align(b"img").faces == ()
    assert waits == [2.0, 1.0] and len(seen) == 3


def test_retries_are_bounded_in_number_and_in_wait() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    transport = scripted([busy("3600")] * 3, seen)
    client = Client(
        "http://svc", transport=transport, sleep=waits.append, retries=2, max_retry_wait_s=5
    )
    with client, pytest.raises(ServiceUnavailableError) as caught:
        client.align(b"img")
    assert waits == [5.0, 5.0] and len(seen) == 3
    assert (caught.value.status, caught.value.error, caught.value.detail) == (
        503,
        "queue_full",
        "64 faces are waiting",
    )
    assert caught.value.retry_after_s == 3600.0


def test_without_retry_after_the_wait_doubles() -> None:
    waits: list[float] = []
    transport = scripted([busy(None), busy(None), httpx.Response(200, json=ANSWER)], [])
    with Client("http://svc", transport=transport, sleep=waits.append) as client:
        client.align(b"img")
    assert waits == [0.5, 1.0]


def test_other_errors_are_not_retried() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(504, json={"error": "deadline_exceeded", "detail": "10 s passed"})
    client = Client("http://svc", transport=scripted([answer], seen))
    with client, pytest.raises(ServiceError) as caught:
        client.align(b"img")
    assert len(seen) == 1 and caught.value.error == "deadline_exceeded"
    assert not isinstance(caught.value, ServiceUnavailableError)


def test_an_error_that_is_not_the_services_json_keeps_its_text() -> None:
    answer = httpx.Response(502, text="<html>Bad Gateway</html>")
    client = Client("http://svc", transport=scripted([answer], []))
    with client, pytest.raises(ServiceError) as caught:
        client.align(b"img")
    assert (caught.value.error, caught.value.detail) == ("http_502", "<html>Bad Gateway</html>")


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(200, json=ANSWER), httpx.Response(200, json=ANSWER)]
    transport = scripted(answers, seen)
    with Client("http://svc", api_key="s3cret", transport=transport) as client:
        client.align(b"img", boxes=[[1, 2, 3, 4]])
    with Client("http://svc", transport=transport) as client:
        client.align(b"img")
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in seen[1].headers
    assert seen[0].url.path == "/align"
    body = seen[0].read()
    assert b'name="boxes"' in body and b"[[1.0, 2.0, 3.0, 4.0]]" in body


def test_the_async_client_retries_too() -> None:
    seen: list[httpx.Request] = []
    answers = [busy("0"), httpx.Response(200, json=ANSWER)]

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    async def run() -> None:
        transport = httpx.MockTransport(handle)
        async with AsyncClient("http://svc", api_key="k", transport=transport) as client:
            assert (await client.align(b"img")).faces == ()

    asyncio.run(run())
    assert len(seen) == 2 and seen[1].headers["Authorization"] == "Bearer k"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25.0 < (retry_after_s(later) or 0.0) <= 30.0
    assert retry_after_s("-3") == 0.0
