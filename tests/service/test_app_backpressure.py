"""Back-pressure in-process: each refusal of admission, with its own reason, at once; late 504.

The app is built by ``create_app`` around the real engine on the tiny model,
held at a gate while a test fills the queue, and a face finder held while a
request is being prepared (see ``app_harness``). A full queue (``queue_full``)
and too long a wait ahead (``queue_wait_too_long``) are different reasons in
the answer and in ``dan_errors_total{reason}``; too many requests in progress
get ``overloaded``; uploads that stall past the body timeout get 408 and take no
place. Each state a refusal needs is held (a gate, a stalled upload) while the test looks, never
reached by racing a timer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import numpy as np
from app_harness import ControlledEngine, ControlledFinder, Served, png, serve, settings_for, until

RETRY_AFTER = "7"  # app_harness.DEFAULTS
FACE = png(np.random.default_rng(1).integers(0, 256, (160, 160), dtype=np.uint8))
BOX = [40.0, 40.0, 120.0, 120.0]


async def post(served: Served, boxes: Sequence[Sequence[float]] | None = (BOX,)) -> httpx.Response:
    form = {} if boxes is None else {"boxes": json.dumps([list(b) for b in boxes])}
    return await served.client.post("/align", files={"image": ("f.png", FACE)}, data=form)


def assert_retry_later(response: httpx.Response, reason: str) -> str:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == reason
    assert response.headers["retry-after"] == RETRY_AFTER
    detail: str = response.json()["detail"]
    return detail


def assert_faces(response: httpx.Response, count: int) -> None:
    assert response.status_code == 200, response.text
    assert len(response.json()["faces"]) == count


def test_a_full_queue_answers_503_queue_full_at_once(tiny_model: Path) -> None:
    settings = settings_for(
        tiny_model, max_batch_size=1, max_wait_ms=0, max_queue_size=4, max_faces=4
    )
    engine = ControlledEngine(settings)

    async def main() -> None:
        async with serve(settings, engine) as served:
            engine.hold()
            running = asyncio.ensure_future(post(served))
            await until(engine.entered.is_set, "the engine running a request")
            four = asyncio.ensure_future(post(served, [BOX] * 4))  # fills the queue
            await served.until_metric("dan_queue_depth", 4)
            detail = assert_retry_later(await post(served), "queue_full")
            assert detail == (
                "the inference queue holds 4 of at most 4 faces (DAN_MAX_QUEUE_SIZE) and cannot "
                "take 1 more; retry later"
            )
            engine.release()
            assert_faces(await running, 1)
            assert_faces(await four, 4)
            assert_faces(await post(served), 1)  # room again
            assert await served.metric("dan_errors_total", reason="queue_full") == 1
            assert await served.metric("dan_errors_total", reason="queue_wait_too_long") == 0

    asyncio.run(main())


def test_work_ahead_longer_than_the_longest_wait_answers_503_queue_wait_too_long(
    tiny_model: Path,
) -> None:
    # A face may wait a microsecond: any work ahead (here a request whose face is being
    # found) turns a request away, while an idle service takes it.
    settings = settings_for(tiny_model, max_batch_size=1, max_wait_ms=0, max_queue_wait_ms=0.001)
    finder = ControlledFinder()

    async def main() -> None:
        async with serve(settings, ControlledEngine(settings), finder) as served:
            assert_faces(await post(served), 1)  # idle: taken; the time per face is now known
            finder.hold()
            preparing = asyncio.ensure_future(post(served, boxes=None))
            await until(finder.entered.is_set, "a request's face being found")
            detail = assert_retry_later(await post(served), "queue_wait_too_long")
            assert "0 faces queued, 1 requests being prepared" in detail
            assert "a face may wait (DAN_MAX_QUEUE_WAIT_MS); retry later" in detail
            finder.release()
            assert_faces(await preparing, 1)
            assert_faces(await post(served), 1)  # idle again: taken
            assert await served.metric("dan_errors_total", reason="queue_wait_too_long") == 1
            assert await served.metric("dan_errors_total", reason="queue_full") == 0

    asyncio.run(main())


def stalled_post(served: Served, resume: asyncio.Event) -> asyncio.Future[httpx.Response]:
    """A JSON request whose body stops half way until ``resume`` is set (then it ends as an
    empty image): it is in progress for as long as the test wants."""

    async def body() -> AsyncIterator[bytes]:
        yield b'{"image": "'
        await resume.wait()
        yield b'"}'

    return asyncio.ensure_future(
        served.client.post("/align", content=body(), headers={"content-type": "application/json"})
    )


def test_too_many_requests_in_progress_get_503_overloaded_at_once(tiny_model: Path) -> None:
    # The requests in progress are held in the engine until the test lets them go (no deadline
    # in reach), so the third request meets two in progress however slow the machine. (A
    # request counts as in progress only once its body is in: see the next test.)
    settings = settings_for(
        tiny_model, max_pending_requests=2, request_deadline_ms=600_000, max_batch_size=1
    )
    engine = ControlledEngine(settings)

    async def main() -> None:
        async with serve(settings, engine) as served:
            engine.hold()
            held = [asyncio.ensure_future(post(served)) for _ in range(2)]
            admission = served.state.admission
            await until(lambda: admission.pending == 2, "two requests in progress")
            detail = assert_retry_later(await post(served), "overloaded")
            assert detail == (
                "2 requests are in progress, the most this service takes "
                "(DAN_MAX_PENDING_REQUESTS); retry later"
            )
            engine.release()
            for answer in await asyncio.gather(*held):
                assert_faces(answer, 1)
            assert admission.pending == 0
            assert_faces(await post(served), 1)  # room again
            assert await served.metric("dan_errors_total", reason="overloaded") == 1

    asyncio.run(main())


def test_an_upload_stalled_past_the_body_timeout_gets_408_and_takes_no_place(
    tiny_model: Path,
) -> None:
    # Long enough to look at the stalled upload before its timeout, on a loaded machine too.
    settings = settings_for(tiny_model, body_timeout_ms=2000, max_pending_requests=1)
    never = asyncio.Event()  # the rest of the body never comes: only the body timeout ends it

    async def main() -> None:
        async with serve(settings, ControlledEngine(settings)) as served:
            stalled = stalled_post(served, never)
            await served.until_metric("dan_requests_in_flight", 2)  # it, and this scrape
            assert served.state.admission.pending == 0  # in progress, but no place taken
            answer = await stalled
            assert answer.status_code == 408, answer.text
            assert answer.json() == {
                "error": "body_timeout",
                "detail": "the request body did not arrive within 2000 ms (DAN_BODY_TIMEOUT_MS): "
                "11 bytes came",
            }
            assert answer.headers["connection"] == "close"
            assert served.state.admission.pending == 0
            assert_faces(await post(served), 1)
            assert await served.metric("dan_errors_total", reason="body_timeout") == 1

    asyncio.run(main())
