"""Back-pressure in real servers: a full queue and too many requests get 503 at once, late 504.

A tight server with a one-face batch, a queue of four faces, two requests in
progress at most and a 1 s deadline. The tiny model takes tens of ms per
face on CPU, so a request's four queued faces keep the queue full while a
request decoded alongside it tries to queue its own; uploads that trickle in
slower than the deadline hold request slots and then get 504. An impatient
server lets a face wait a microsecond at most, so any work ahead of a request
(here a request whose faces the detector is still finding) turns it away at
once, and an idle one takes it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_support import RunningService, serving

from training.dataset import Sample

RETRY_AFTER_S = 7
TIGHT = {
    "max_batch_size": 1,
    "max_queue_size": 4,
    "max_faces": 4,
    "max_wait_ms": 0,
    "max_pending_requests": 2,
    "request_deadline_ms": 1000,
    "max_queue_wait_ms": 1000,
    "retry_after_s": RETRY_AFTER_S,
}
IMPATIENT = {
    "max_batch_size": 1,
    "max_wait_ms": 0,
    "max_queue_wait_ms": 0.001,
    "detector": "centerface",
}


@pytest.fixture(scope="module")
def tight(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with serving(
        tmp_path_factory.mktemp("tight-service"), model_path=tiny_model, **TIGHT
    ) as running:
        yield running


@pytest.fixture(scope="module")
def impatient(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    with serving(
        tmp_path_factory.mktemp("impatient"), model_path=tiny_model, **IMPATIENT
    ) as running:
        yield running


def post(url: str, data: bytes, boxes: list[list[float]] | None) -> httpx.Response:
    """POST /align with these boxes (None: none sent, the detector finds the faces)."""
    form = {} if boxes is None else {"boxes": json.dumps(boxes)}
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post("/align", files={"image": ("f.jpg", data)}, data=form)


def together(
    url: str, requests: list[tuple[bytes, list[list[float]] | None]], gap_s: float = 0.0
) -> list[httpx.Response]:
    """Send requests from threads at (about) the same time, ``gap_s`` apart; answers in order."""
    answers: list[httpx.Response | None] = [None] * len(requests)

    def send(i: int) -> None:
        answers[i] = post(url, *requests[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
        time.sleep(gap_s)
    for thread in threads:
        thread.join(60)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def assert_retry_later(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == reason
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)


def test_a_full_queue_answers_503_at_once(tight: RunningService, test_faces: list[Sample]) -> None:
    sample = test_faces[0]
    data = sample.image_path.read_bytes()
    four = [sample.detector_box.tolist()] * 4  # fills the queue on its own
    for _ in range(10):  # two uploads decoded side by side; one of them finds the queue full
        answers = together(tight.url, [(data, four), (data, four)])
        codes = sorted(a.status_code for a in answers)
        # 504: on a machine too busy for the 1 s deadline; try again
        assert set(codes) <= {200, 503, 504}, [a.text for a in answers]
        if codes == [200, 503]:
            break
    assert codes == [200, 503], "ten pairs of requests never overlapped in the queue"
    rejected = next(a for a in answers if a.status_code == 503)
    assert_retry_later(rejected, "queue_full")
    # Full (64 faces), or (on a slow, busy machine) more work queued than the 1 s a face may wait.
    assert any(
        reason in rejected.json()["detail"] for reason in ("cannot take 4 more", "may wait")
    ), rejected.text
    accepted = next(a for a in answers if a.status_code == 200)
    assert len(accepted.json()["faces"]) == 4
    assert rejected.elapsed < accepted.elapsed  # refused at once, not after waiting
    again = post(tight.url, data, [sample.detector_box.tolist()])
    assert again.status_code == 200, again.text


def test_too_many_requests_get_503_at_once_and_late_ones_504(
    tight: RunningService, test_faces: list[Sample]
) -> None:
    # Two uploads that trickle in for 3 s hold both request slots past their deadline.
    def trickle() -> Iterator[bytes]:
        for _ in range(15):
            yield b"-" * 100
            time.sleep(0.2)

    def slow_upload() -> httpx.Response:
        with httpx.Client(base_url=tight.url, timeout=30) as client:
            return client.post(
                "/align", content=trickle(), headers={"content-type": "application/json"}
            )

    late: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: late.append(slow_upload())) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    sample = test_faces[1]
    started = time.monotonic()
    refused = post(tight.url, sample.image_path.read_bytes(), [sample.detector_box.tolist()])
    assert time.monotonic() - started < 0.5
    assert_retry_later(refused, "overloaded")
    assert "DAN_MAX_PENDING_REQUESTS" in refused.json()["detail"]
    for thread in threads:
        thread.join(30)
    for answer in late:
        assert answer.status_code == 504, answer.text
        assert answer.json() == {
            "error": "deadline_exceeded",
            "detail": "no answer within the deadline of 1000 ms",
        }
    recovered = post(tight.url, sample.image_path.read_bytes(), [sample.detector_box.tolist()])
    assert recovered.status_code == 200, recovered.text
    errors = {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(tight.client.get("/metrics").text)
        for s in family.samples
        if s.name == "dan_errors_total"
    }
    assert errors["deadline_exceeded"] == 2
    assert errors["overloaded"] == 1


def test_work_ahead_longer_than_the_longest_wait_gets_503_at_once(
    impatient: RunningService, test_faces: list[Sample]
) -> None:
    sample = test_faces[0]
    data = sample.image_path.read_bytes()
    one, four = [sample.detector_box.tolist()], [sample.detector_box.tolist()] * 4
    first = post(impatient.url, data, one)  # an idle queue always takes a request
    assert first.status_code == 200, first.text
    for _ in range(10):  # the second arrives while the detector runs for the first: turned away
        answers = together(impatient.url, [(data, None), (data, four)], gap_s=0.02)
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 503}, [a.text for a in answers]
        if codes == [200, 503]:
            break
    assert codes == [200, 503], "ten pairs of requests never overlapped"
    accepted, rejected = answers
    assert rejected.json()["error"] == "queue_full"
    assert "a face may wait" in rejected.json()["detail"], rejected.text
    assert rejected.elapsed < accepted.elapsed  # refused at once, not after waiting
    again = post(impatient.url, data, one)  # idle again: taken
    assert again.status_code == 200, again.text
