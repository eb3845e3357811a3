"""service.batching in plain asyncio: coalescing, waiting, failures, back-pressure, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from service.batching import Batcher, Completed
from service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    QueueFullError,
    ShuttingDownError,
)

FAR = 1e9  # a deadline that never passes (event-loop seconds)


class Doubler:
    """A batch function that doubles numbers, records its batches, may be slow and may fail."""

    def __init__(self, delay_s: float = 0.0, fail_on: Callable[[int], bool] | None = None) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, values: Sequence[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(values))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and any(self.fail_on(v) for v in values):
            raise ValueError(f"cannot double a batch holding {values}")
        return [2 * v for v in values]


def make(infer: Callable[[Sequence[int]], Sequence[int]], **options: float) -> Batcher[int, int]:
    settings: dict[str, float] = {
        "max_batch_size": 4,
        "max_wait_s": 0.01,
        "max_queue_size": 64,
        "max_queue_wait_s": float("inf"),
    }
    settings.update(options)
    return Batcher(
        infer,
        max_batch_size=int(settings["max_batch_size"]),
        max_wait_s=settings["max_wait_s"],
        max_queue_size=int(settings["max_queue_size"]),
        max_queue_wait_s=settings["max_queue_wait_s"],
    )


async def one(batcher: Batcher[int, int], value: int, deadline: float = FAR) -> Completed[int]:
    (result,) = await batcher.run_many([value], deadline)
    return result


def test_concurrent_submissions_coalesce_into_batches_no_larger_than_the_maximum() -> None:
    async def main() -> tuple[list[Completed[int]], Doubler]:
        infer = Doubler(delay_s=0.02)
        batcher = make(infer, max_batch_size=4, max_wait_s=0.05)
        batcher.start()
        results = await asyncio.gather(*(one(batcher, v) for v in range(30)))
        await batcher.stop()
        return list(results), infer

    results, infer = asyncio.run(main())
    assert [r.value for r in results] == [2 * v for v in range(30)]
    sizes = [len(b) for b in infer.batches]
    assert sum(sizes) == 30
    assert max(sizes) == 4  # coalesced, never above the maximum
    assert len(sizes) <= 10  # 30 inputs in batches of 4 (rounding up, plus a partial first)
    assert all(1 <= r.batch_size <= 4 for r in results)


def test_a_lone_request_waits_the_maximum_wait_and_no_longer() -> None:
    max_wait = 0.08

    async def main() -> tuple[Completed[int], float]:
        batcher = make(Doubler(), max_batch_size=8, max_wait_s=max_wait)
        batcher.start()
        started = time.perf_counter()
        result = await one(batcher, 21)
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return result, elapsed

    result, elapsed = asyncio.run(main())
    assert result.value == 42
    assert result.batch_size == 1
    # Not early (the batch was not full), and not much later than the maximum wait.
    assert max_wait - 0.002 <= result.queue_wait_s <= max_wait + 0.05
    assert elapsed <= max_wait + 0.08


def test_a_full_batch_runs_without_waiting() -> None:
    async def main() -> float:
        batcher = make(Doubler(), max_batch_size=4, max_wait_s=5.0)
        batcher.start()
        started = time.perf_counter()
        results = await batcher.run_many([1, 2, 3, 4], FAR)
        assert [r.value for r in results] == [2, 4, 6, 8]
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(main()) < 1.0


def test_a_failing_batch_fails_every_caller_in_it_and_the_worker_survives() -> None:
    async def main() -> tuple[list[BaseException | Completed[int]], Completed[int], Doubler]:
        infer = Doubler(fail_on=lambda v: v < 0)
        batcher = make(infer, max_batch_size=8, max_wait_s=0.05)
        batcher.start()
        outcomes = await asyncio.gather(
            one(batcher, 1), one(batcher, -1), one(batcher, 2), return_exceptions=True
        )
        after = await one(batcher, 5)
        await batcher.stop()
        return list(outcomes), after, infer

    outcomes, after, infer = asyncio.run(main())
    assert infer.batches[0] == [1, -1, 2]  # one batch
    assert all(isinstance(o, InferenceFailedError) for o in outcomes)
    assert all("batch of 3 faces" in str(o) for o in outcomes)
    assert after.value == 10  # the worker carried on


def test_a_batch_function_returning_the_wrong_count_fails_its_batch() -> None:
    async def main() -> tuple[BaseException | Completed[int], Completed[int]]:
        calls = {"n": 0}

        def short_once(values: Sequence[int]) -> list[int]:
            calls["n"] += 1
            doubled = [2 * v for v in values]
            return doubled[:-1] if calls["n"] == 1 else doubled

        batcher = make(short_once)
        batcher.start()
        (failed,) = await asyncio.gather(one(batcher, 3), return_exceptions=True)
        after = await one(batcher, 4)
        await batcher.stop()
        return failed, after

    failed, after = asyncio.run(main())
    assert isinstance(failed, InferenceFailedError)
    assert after.value == 8


def test_a_full_queue_rejects_at_once() -> None:
    async def main() -> tuple[float, str, list[int]]:
        release = threading.Event()

        def blocked(values: Sequence[int]) -> list[int]:
            release.wait(5.0)
            return [2 * v for v in values]

        batcher = make(blocked, max_batch_size=1, max_wait_s=0.0, max_queue_size=3)
        batcher.start()
        running = batcher.submit_many([0], FAR)  # taken by the worker, which then blocks
        while batcher.depth:
            await asyncio.sleep(0.001)
        queued = batcher.submit_many([1, 2, 3], FAR)  # fills the queue
        started = time.perf_counter()
        with pytest.raises(QueueFullError) as rejected:
            batcher.submit_many([4], FAR)
        elapsed = time.perf_counter() - started
        release.set()
        values = [r.value for r in await asyncio.gather(*running, *queued)]
        await batcher.stop()
        return elapsed, str(rejected.value), values

    elapsed, message, values = asyncio.run(main())
    assert elapsed < 0.01
    assert "holds 3 of at most 3" in message
    assert values == [0, 2, 4, 6]  # the accepted ones all completed


def test_a_request_is_queued_whole_or_not_at_all() -> None:
    async def main() -> int:
        batcher = make(Doubler(), max_queue_size=4, max_wait_s=1.0, max_batch_size=8)
        batcher.start()
        batcher.submit_many([1, 2, 3], FAR)
        with pytest.raises(QueueFullError):
            batcher.submit_many([4, 5], FAR)
        depth = batcher.depth
        await batcher.stop()
        return depth

    assert asyncio.run(main()) == 3


def test_a_queue_slower_than_the_deadline_rejects_at_once() -> None:
    async def main() -> tuple[float, str, int]:
        batcher = make(Doubler(delay_s=0.05), max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        await one(batcher, 0)  # one batch: about 0.05 s per face
        loop = asyncio.get_running_loop()
        queued = batcher.submit_many(list(range(1, 11)), FAR)  # about 0.5 s of work
        started = time.perf_counter()
        with pytest.raises(QueueFullError) as rejected:
            batcher.submit_many([11], loop.time() + 0.2)
        elapsed = time.perf_counter() - started
        accepted = await one(batcher, 12, deadline=loop.time() + 5.0)
        await asyncio.gather(*queued)
        await batcher.stop()
        return elapsed, str(rejected.value), accepted.value

    elapsed, message, value = asyncio.run(main())
    assert elapsed < 0.01
    assert "s of work, more than the 0.20 s left before the request's deadline" in message
    assert value == 24


def test_a_queue_longer_than_the_longest_wait_rejects_at_once() -> None:
    async def main() -> tuple[str, list[int], int]:
        batcher = make(
            Doubler(delay_s=0.05), max_batch_size=1, max_wait_s=0.0, max_queue_wait_s=0.12
        )
        batcher.start()
        await one(batcher, 0)  # one batch: about 0.05 s per face
        first = batcher.submit_many([1, 2, 3, 4], FAR)  # nothing ahead: taken
        with pytest.raises(QueueFullError) as rejected:  # about 0.2 s ahead
            batcher.submit_many([5], FAR)
        values = [r.value for r in await asyncio.gather(*first)]
        accepted = await one(batcher, 8)  # the queue drained: taken again
        await batcher.stop()
        return str(rejected.value), values, accepted.value

    message, values, value = asyncio.run(main())
    assert "more than the 0.12 s a face may wait" in message
    assert values == [2, 4, 6, 8]
    assert value == 16


def test_an_item_past_its_deadline_is_not_run_and_its_caller_gets_deadline_exceeded() -> None:
    async def main() -> tuple[BaseException | Completed[int], Completed[int], Doubler]:
        infer = Doubler(delay_s=0.15)
        batcher = make(infer, max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(one(batcher, 1))  # occupies the worker for 0.15 s
        await asyncio.sleep(0.01)
        (late,) = await asyncio.gather(
            one(batcher, 2, deadline=loop.time() + 0.05), return_exceptions=True
        )
        done = await first
        await asyncio.sleep(0.2)  # the worker has since looked at the expired item
        await batcher.stop()
        return late, done, infer

    late, done, infer = asyncio.run(main())
    assert isinstance(late, DeadlineExceededError)
    assert done.value == 2
    assert [2] not in infer.batches  # the expired face never ran


def test_a_deadline_does_not_fire_early() -> None:
    async def main() -> Completed[int]:
        batcher = make(Doubler(delay_s=0.05), max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        loop = asyncio.get_running_loop()
        result = await one(batcher, 7, deadline=loop.time() + 2.0)
        await batcher.stop()
        return result

    assert asyncio.run(main()).value == 14


def test_stop_drains_the_queue_then_refuses_new_work() -> None:
    async def main() -> tuple[list[int], BaseException | None]:
        batcher = make(Doubler(delay_s=0.01), max_batch_size=2, max_wait_s=1.0)
        batcher.start()
        futures = batcher.submit_many([1, 2, 3, 4, 5], FAR)
        await batcher.stop(timeout=5.0)
        values = [f.result().value for f in futures]
        refused: BaseException | None = None
        try:
            batcher.submit_many([6], FAR)
        except ShuttingDownError as e:
            refused = e
        return values, refused

    values, refused = asyncio.run(main())
    assert values == [2, 4, 6, 8, 10]
    assert refused is not None


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_batch_size", 0), ("max_wait_s", -0.001), ("max_queue_size", 0), ("max_queue_wait_s", 0)],
)
def test_bad_settings_fail_at_construction(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        make(Doubler(), **{option: value})
