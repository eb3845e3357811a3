"""The app in-process when its parts fail or are slow: 500s, not ready, shutting down.

Built by ``create_app`` with a real engine on the tiny model (or on a model that
answers NaN for an all-black crop) that a test can hold or make fail, and a
face finder that can raise; requests go through the ASGI transport (see
``app_harness``). Signals and exit codes stay with the real-process tests
(``test_app_lifecycle``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from app_harness import (
    ControlledEngine,
    ControlledFinder,
    Served,
    nan_for_black_model,
    png,
    serve,
    settings_for,
    until,
)

from service.engine import FaceOutput, NonFiniteOutputError

RETRY_AFTER = "7"  # app_harness.DEFAULTS
NOISE = png(np.random.default_rng(0).integers(0, 256, (160, 160), dtype=np.uint8))
BLACK = png(np.zeros((160, 160), dtype=np.uint8))
BOX = [40.0, 40.0, 120.0, 120.0]


async def post(
    served: Served, data: bytes, boxes: Sequence[Sequence[float]] | None = (BOX,)
) -> httpx.Response:
    form = {} if boxes is None else {"boxes": json.dumps([list(b) for b in boxes])}
    return await served.client.post("/align", files={"image": ("f.png", data)}, data=form)


def assert_error(response: httpx.Response, status: int, reason: str) -> str:
    """The answer is the JSON error ``reason`` with ``status`` (and Retry-After for 503); its
    detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == reason, body
    assert response.headers.get("retry-after") == (RETRY_AFTER if status == 503 else None)
    detail: str = body["detail"]
    return detail


def assert_landmarks(response: httpx.Response, faces: int = 1) -> None:
    assert response.status_code == 200, response.text
    answer = response.json()["faces"]
    assert len(answer) == faces
    for face in answer:
        points = np.asarray(face["landmarks"])
        assert points.shape == (68, 2) and np.isfinite(points).all()


def test_a_batch_the_engine_fails_answers_500_inference_failed_then_service_goes_on(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tiny_model)
    engine = ControlledEngine(settings)

    async def main() -> None:
        async with serve(settings, engine) as served:
            engine.fail_with = RuntimeError("the device fell over")
            with caplog.at_level(logging.ERROR, logger="service.batching"):
                detail = assert_error(await post(served, NOISE), 500, "inference_failed")
            assert detail == (
                "inference failed: the batch function raised for the batch of 1 inputs this "
                "one was in; the cause is in the log"
            )
            assert "the device fell over" in caplog.text  # the cause, for the operator only
            engine.fail_with = None
            assert_landmarks(await post(served, NOISE))
            assert await served.metric("dan_errors_total", reason="inference_failed") == 1
            assert await served.metric("dan_batches_total", outcome="failed") == 1
            assert await served.metric("dan_batches_total", outcome="ok") == 1

    asyncio.run(main())


def test_a_face_whose_output_is_not_finite_fails_alone_not_the_others_of_its_batch(
    tiny_model: Path, tmp_path: Path
) -> None:
    nan_model = nan_for_black_model(
        tiny_model, ControlledEngine(settings_for(tiny_model)), tmp_path / "nan.onnx"
    )
    settings = settings_for(nan_model, max_batch_size=2, max_wait_ms=0)
    engine = ControlledEngine(settings)
    black, lit = np.zeros((112, 112), np.uint8), np.full((112, 112), 90, np.uint8)
    failed, answered = engine.run_faces([black, lit])
    assert isinstance(failed, NonFiniteOutputError)
    assert isinstance(answered, FaceOutput) and np.isfinite(answered.landmarks).all()
    with pytest.raises(RuntimeError, match="non-finite landmarks for 1 of 2 crops"):
        engine.run([black, lit])  # warm-up's check: any bad face fails it

    async def main() -> None:
        async with serve(settings, engine) as served:
            engine.hold()  # the worker runs a first request; two clients queue behind it
            first = asyncio.ensure_future(post(served, NOISE))
            await until(engine.entered.is_set, "the engine running the first request")
            dark = asyncio.ensure_future(post(served, BLACK))
            light = asyncio.ensure_future(post(served, NOISE))
            await served.until_metric("dan_queue_depth", 2)
            engine.batches.clear()
            engine.release()
            assert_landmarks(await first)
            detail = assert_error(await dark, 500, "inference_failed")
            assert detail == (
                "inference failed for this face: the model's landmarks for this face are not "
                "finite (NaN or infinite); expected finite pixel coordinates (a failure of this "
                "input alone, in a batch of 2)"
            )
            assert_landmarks(await light)  # the other client's face in the same batch
            assert engine.batches == [2]
            assert await served.metric("dan_batches_total", outcome="partial") == 1
            assert await served.metric("dan_faces_aligned_total") == 2

    asyncio.run(main())


def test_an_unexpected_error_answers_500_internal_error_then_service_goes_on(
    tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tiny_model)
    finder = ControlledFinder()

    async def main() -> None:
        async with serve(settings, ControlledEngine(settings), finder) as served:
            finder.fail_with = KeyError("a bug in the face finder")
            with caplog.at_level(logging.DEBUG):
                detail = assert_error(await post(served, NOISE, boxes=None), 500, "internal_error")
            assert detail == "unexpected error; the cause is in the service log"
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]  # logged once, not twice
            assert errors[0].exc_info is not None and "a bug in the face finder" in caplog.text
            finder.fail_with = None
            response = await post(served, NOISE, boxes=None)
            assert_landmarks(response)
            assert response.json()["faces"][0]["box_source"] == "whole_image"
            assert await served.metric("dan_errors_total", reason="internal_error") == 1

    asyncio.run(main())


def test_not_ready_while_warming_up_then_ready(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    engine = ControlledEngine(settings)
    engine.hold()  # warm-up waits in the engine

    async def main() -> None:
        async with serve(settings, engine, ready=False) as served:
            await until(engine.entered.is_set, "warm-up in the engine")
            assert (await served.client.get("/health/live")).status_code == 200
            not_ready = await served.client.get("/health/ready")
            assert (not_ready.status_code, not_ready.json()["status"]) == (503, "not_ready")
            assert_error(await post(served, NOISE), 503, "not_ready")
            assert await served.metric("dan_ready") == 0
            engine.release()
            await served.until_ready()
            assert_landmarks(await post(served, NOISE))
            assert await served.metric("dan_ready") == 1

    asyncio.run(main())


def test_a_model_failing_in_warm_up_stops_the_service(tiny_model: Path) -> None:
    settings = settings_for(tiny_model)
    engine = ControlledEngine(settings)
    engine.fail_with = RuntimeError("model returned non-finite landmarks")

    async def main() -> None:
        async with serve(settings, engine, ready=False) as served:
            await asyncio.wait_for(served.stopped.wait(), 20)  # stop_service was called
            assert served.state.fatal is engine.fail_with
            assert (await served.client.get("/health/ready")).status_code == 503
            assert_error(await post(served, NOISE), 503, "not_ready")

    asyncio.run(main())


async def one_running_one_queued(
    served: Served, engine: ControlledEngine
) -> tuple[asyncio.Future[httpx.Response], asyncio.Future[httpx.Response]]:
    """A request held in the (held) engine and one waiting in the queue behind it."""
    engine.hold()
    running = asyncio.ensure_future(post(served, NOISE))
    await until(engine.entered.is_set, "the engine running a request")
    queued = asyncio.ensure_future(post(served, NOISE))
    await served.until_metric("dan_queue_depth", 1)
    return running, queued


def test_shutdown_answers_the_faces_queued_and_refuses_new_requests(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, max_batch_size=1, max_wait_ms=0)
    engine = ControlledEngine(settings)

    async def main() -> None:
        async with serve(settings, engine) as served:
            running, queued = await one_running_one_queued(served, engine)
            served.start_shutdown()
            await until(lambda: served.state.admission.closing, "admission closed")
            detail = assert_error(await post(served, NOISE), 503, "shutting_down")
            assert detail == "the service is shutting down and takes no new requests"
            assert (await served.client.get("/health/ready")).status_code == 503
            engine.release()
            await served.shut_down()
            assert_landmarks(await running)
            assert_landmarks(await queued)  # drained before the worker stopped

    asyncio.run(main())


def test_past_the_shutdown_timeout_the_faces_not_answered_get_503(tiny_model: Path) -> None:
    settings = settings_for(tiny_model, max_batch_size=1, max_wait_ms=0, shutdown_timeout_s=0)
    engine = ControlledEngine(settings)

    async def main() -> None:
        async with serve(settings, engine) as served:
            running, queued = await one_running_one_queued(served, engine)
            await served.shut_down()  # gives up draining at once
            for answer in (await running, await queued):
                detail = assert_error(answer, 503, "shutting_down")
                assert detail.startswith("the service shut down before this face was run: ")
            engine.release()

    asyncio.run(main())
