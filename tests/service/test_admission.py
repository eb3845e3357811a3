"""service.admission over a real batcher: every refusal, its reason, and the deadline.

The batch function can be held at a gate, so the queue holds what a test puts
in it while the test looks; a batch of one that sleeps gives a known least
inference time per face, so a refusal for the wait ahead does not depend on
the machine's speed (only on the time having been at least that long).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
from waiting import until

from service.admission import Admission, Limits, Ticket
from service.batching import Batcher, Completed, ExpiredError
from service.errors import (
    DeadlineExceededError,
    NotReadyError,
    OverloadedError,
    QueueFullError,
    QueueWaitTooLongError,
    ShuttingDownError,
)

WAIT_S = 10.0
PER_FACE_S = 0.05  # the least time of one batch of one face (see Gated)
LIMITS = Limits(
    max_pending_requests=8, max_queue_size=16, max_queue_wait_s=30.0, request_deadline_s=30.0
)


class Gated:
    """A batch function doubling numbers; it takes at least ``delay_s`` a batch and can be held."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[int]] = []

    def __call__(self, values: Sequence[int]) -> list[int]:
        self.batches.append(list(values))
        self.entered.set()
        assert self.gate.wait(WAIT_S), "the gate was never opened"
        time.sleep(self.delay_s)
        return [2 * v for v in values]

    def hold(self) -> None:
        self.entered.clear()
        self.gate.clear()


def scenario(
    test: Callable[[Admission[int, int], Gated], Coroutine[Any, Any, None]],
    delay_s: float = 0.0,
    measured: bool = False,
    **limits: float,
) -> None:
    """Run ``test`` with an open admission over a running batcher of batches of one;
    ``measured``: one batch has run, so the time per face is known (at least ``delay_s``)."""

    async def main() -> None:
        infer = Gated(delay_s)
        batcher: Batcher[int, int] = Batcher(infer, max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        admission: Admission[int, int] = Admission(Limits(**{**LIMITS.__dict__, **limits}))
        admission.open(batcher)
        if measured:
            await batcher.run_many([0])
            infer.batches.clear()
        try:
            await test(admission, infer)
        finally:
            infer.gate.set()
            await batcher.stop(timeout=WAIT_S)

    asyncio.run(main())


async def hold_worker(admission: Admission[int, int], infer: Gated) -> list[asyncio.Future[Any]]:
    """The worker held in the batch function with one input; the queue is empty."""
    infer.hold()
    running = admission.batcher.submit([100])
    await until(infer.entered.is_set, "the worker in the batch function")
    assert admission.batcher.depth == 0
    return list(running)


def test_requests_are_refused_until_open_and_once_closing() -> None:
    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(Gated(), max_batch_size=1, max_wait_s=0.0)
        admission: Admission[int, int] = Admission(LIMITS)
        with pytest.raises(NotReadyError, match="loading or warming up"):
            admission.enter()
        assert not admission.is_open
        batcher.start()
        admission.open(batcher)
        assert admission.is_open
        ticket = admission.enter()
        admission.close()
        assert not admission.is_open
        with pytest.raises(ShuttingDownError, match="takes no new requests"):
            admission.enter()
        with pytest.raises(ShuttingDownError, match="faces were not queued"):
            admission.check_queue(ticket, 1)  # admitted before: its faces are not queued either
        admission.leave(ticket)
        assert (admission.pending, admission.preparing) == (0, 0)
        await batcher.stop()

    asyncio.run(main())


def test_requests_in_progress_are_bounded() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        first, _ = admission.enter(), admission.enter()
        with pytest.raises(OverloadedError) as refused:
            admission.enter()
        assert "2 requests are in progress" in str(refused.value)
        assert "DAN_MAX_PENDING_REQUESTS" in str(refused.value)
        admission.leave(first)
        admission.leave(first)  # twice counts once
        assert admission.pending == 1
        admission.enter()

    scenario(test, max_pending_requests=2)


def test_an_idle_queue_takes_a_request_however_short_the_longest_wait() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        assert admission.batcher.seconds_per_item is not None  # the time per face is known
        ticket = admission.enter()
        results = await admission.run(ticket, [1, 2])
        assert [r.value for r in results] == [2, 4]

    scenario(test, measured=True, max_queue_wait_s=1e-9)


def test_work_ahead_longer_than_the_longest_wait_refuses_at_the_door() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        preparing = admission.enter()  # nothing ahead: admitted; being prepared
        with pytest.raises(QueueWaitTooLongError) as refused:  # one face on its way ahead
            admission.enter()
        message = str(refused.value)
        assert "0 faces queued, 1 requests being prepared" in message
        assert "a face may wait (DAN_MAX_QUEUE_WAIT_MS)" in message
        running = await hold_worker(admission, infer)
        queued = asyncio.ensure_future(admission.run(preparing, [1]))
        await until(lambda: admission.batcher.depth == 1, "the face queued")
        assert admission.preparing == 0
        with pytest.raises(QueueWaitTooLongError, match="1 faces queued, 0 requests"):
            admission.enter()
        infer.gate.set()
        await asyncio.gather(*running, queued)
        admission.leave(preparing)
        admission.enter()  # idle again: admitted

    scenario(test, measured=True, max_queue_wait_s=1e-9)


def test_a_full_queue_refuses_a_request_whole() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        running = await hold_worker(admission, infer)
        first, second = admission.enter(), admission.enter()
        queued = asyncio.ensure_future(admission.run(first, [1, 2]))
        await until(lambda: admission.batcher.depth == 2, "two faces queued")
        with pytest.raises(QueueFullError) as refused:
            await admission.run(second, [3, 4])
        assert str(refused.value) == (
            "the inference queue holds 2 of at most 3 faces (DAN_MAX_QUEUE_SIZE) and cannot "
            "take 2 more; retry later"
        )
        assert admission.batcher.depth == 2  # none of the refused request's faces
        infer.gate.set()
        assert [r.value for r in await queued] == [2, 4]
        await asyncio.gather(*running)
        assert [r.value for r in await admission.run(second, [3, 4])] == [6, 8]

    scenario(test, max_queue_size=3)


def test_work_ahead_longer_than_the_longest_wait_refuses_a_requests_faces() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        ticket = admission.enter()  # idle: admitted; the queue fills while it is prepared
        running = await hold_worker(admission, infer)
        ahead = admission.batcher.submit([1, 2, 3, 4])  # at least 4 x 0.05 s of work
        with pytest.raises(QueueWaitTooLongError) as refused:
            admission.check_queue(ticket, 1)
        message = str(refused.value)
        assert message.startswith("the inference queue holds 4 faces, about ")
        assert "more than the 0.120 s a face may wait (DAN_MAX_QUEUE_WAIT_MS)" in message
        infer.gate.set()
        await asyncio.gather(*running, *ahead)

    scenario(test, delay_s=PER_FACE_S, measured=True, max_queue_wait_s=0.12)


def test_a_wait_that_would_outlast_the_deadline_refuses_a_requests_faces() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        ticket = admission.enter()
        running = await hold_worker(admission, infer)
        ahead = admission.batcher.submit([1, 2, 3, 4])  # with its own face: at least 0.25 s
        with pytest.raises(QueueWaitTooLongError) as refused:
            admission.check_queue(ticket, 1)
        assert "with this request's 1 that is about" in str(refused.value)
        assert "s left before its deadline; retry later" in str(refused.value)
        infer.gate.set()
        await asyncio.gather(*running, *ahead)

    scenario(test, delay_s=PER_FACE_S, measured=True, request_deadline_s=0.2)


def test_a_request_past_its_deadline_queues_nothing() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        ticket = admission.enter()
        loop = asyncio.get_running_loop()
        await until(lambda: loop.time() > ticket.deadline, "the deadline passed")
        with pytest.raises(DeadlineExceededError, match="before its faces were queued"):
            await admission.run(ticket, [1])
        assert admission.batcher.depth == 0 and infer.batches == []

    scenario(test, request_deadline_s=0.01)


def test_the_deadline_cuts_an_admitted_request_short_and_frees_its_place() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        with pytest.raises(DeadlineExceededError) as late:
            async with admission.admit():
                assert (admission.pending, admission.preparing) == (1, 1)
                await asyncio.Event().wait()  # never set: only the deadline ends this
        assert str(late.value) == "no answer within the deadline of 50 ms"
        assert (admission.pending, admission.preparing) == (0, 0)
        with pytest.raises(TimeoutError):  # not the deadline's: passed on as it is
            async with admission.admit():
                raise TimeoutError("a timeout of the request's own")
        with pytest.raises(ValueError, match="broken"):
            async with admission.admit() as ticket:
                assert isinstance(ticket, Ticket)
                raise ValueError("broken")
        assert (admission.pending, admission.preparing) == (0, 0)

    scenario(test, request_deadline_s=0.05)


def test_faces_still_queued_at_the_deadline_expire_unrun() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        ticket = admission.enter()
        running = await hold_worker(admission, infer)
        late = asyncio.ensure_future(admission.run(ticket, [7]))
        await until(lambda: admission.batcher.depth == 1, "the face queued")
        loop = asyncio.get_running_loop()
        await until(lambda: loop.time() > ticket.deadline, "the deadline passed")
        infer.gate.set()
        with pytest.raises(ExpiredError):
            await late
        await asyncio.gather(*running)
        assert [7] not in infer.batches

    scenario(test, request_deadline_s=0.05)


def test_results_carry_the_batchers_timings() -> None:
    async def test(admission: Admission[int, int], infer: Gated) -> None:
        ticket = admission.enter()
        (result,) = await admission.run(ticket, [21])
        assert isinstance(result, Completed)
        assert result.value == 42 and result.batch_size == 1 and result.inference_s >= PER_FACE_S

    scenario(test, delay_s=PER_FACE_S)
