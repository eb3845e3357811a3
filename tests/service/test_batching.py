"""service.batching in plain asyncio: coalescing, waiting, each failure branch, expiry, draining.

The batcher is a library without HTTP: its failures are its own exceptions.
Tests that need the worker busy hold it in a ``Gate`` (the batch function
blocks until released) and wait for what they can observe (the gate entered,
the queue depth), never for a guessed time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from waiting import until

from service.batching import (
    Batcher,
    BatchFailedError,
    ClosedError,
    Completed,
    DroppedError,
    ExpiredError,
    ItemFailedError,
)

WAIT_S = 10.0  # the longest a test waits for something it expects to happen


class Doubler:
    """A batch function that doubles numbers and records its batches; it may be slow, raise
    for a batch, refuse single values, or be held at a gate until released."""

    def __init__(
        self,
        delay_s: float = 0.0,
        fail_on: Callable[[int], bool] | None = None,
        refuse: Callable[[int], bool] | None = None,
    ) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.refuse = refuse
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, values: Sequence[int]) -> list[int | Exception]:
        with self.lock:
            self.batches.append(list(values))
        self.entered.set()
        assert self.gate.wait(WAIT_S), "the gate was never opened"
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and any(self.fail_on(v) for v in values):
            raise ValueError(f"cannot double a batch holding {values}")
        return [
            ValueError(f"{v} is not doubled") if self.refuse and self.refuse(v) else 2 * v
            for v in values
        ]

    def hold(self) -> None:
        """Batches block until ``release``."""
        self.entered.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()


class Observer:
    """Records what the batcher reports of each batch (an assertion here would be swallowed:
    the worker outlives any error of its observer, so the tests check ``calls``)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[tuple[int, int]] = []  # (size, failed)
        self.reports: list[tuple[int, int, float]] = []  # (size, queue waits given, inference s)
        self.fail_first = fail_first

    def batch_done(
        self, size: int, queue_waits: Sequence[float], inference_s: float, failed: int
    ) -> None:
        self.calls.append((size, failed))
        self.reports.append((size, len(queue_waits), inference_s))
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("the observer fell over")

    def check_reports(self) -> None:
        """One queue wait per input of each batch, and a run time that is not negative."""
        assert self.reports and all(
            waits == size and inference_s >= 0 for size, waits, inference_s in self.reports
        ), self.reports


def make(
    infer: Callable[[Sequence[int]], Sequence[int | Exception]],
    observer: Observer | None = None,
    **options: float,
) -> Batcher[int, int]:
    settings: dict[str, float] = {"max_batch_size": 4, "max_wait_s": 0.01}
    settings.update(options)
    return Batcher(
        infer,
        max_batch_size=int(settings["max_batch_size"]),
        max_wait_s=settings["max_wait_s"],
        observer=observer,
    )


async def one(batcher: Batcher[int, int], value: int) -> Completed[int]:
    (result,) = await batcher.run_many([value])
    return result


async def held_on_first_input(
    max_batch_size: int,
) -> tuple[Doubler, Batcher[int, int], list[asyncio.Future[Completed[int]]]]:
    """A started batcher whose worker is held inside the batch function with input 1."""
    infer = Doubler()
    batcher = make(infer, max_batch_size=max_batch_size, max_wait_s=0.0)
    batcher.start()
    infer.hold()
    running = batcher.submit([1])
    await until(infer.entered.is_set, "the worker in the batch function")
    return infer, batcher, running


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
    # The batch runs when the wait is over, not before; "no longer" is checked with room for a
    # busy machine (the timer and the worker thread may start late): less than twice the wait.
    max_wait = 0.25

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
    assert max_wait - 0.002 <= result.queue_wait_s < 2 * max_wait
    assert elapsed < 2 * max_wait


def test_a_full_batch_runs_without_waiting() -> None:
    async def main() -> float:
        batcher = make(Doubler(), max_batch_size=4, max_wait_s=5.0)
        batcher.start()
        started = time.perf_counter()
        results = await batcher.run_many([1, 2, 3, 4])
        assert [r.value for r in results] == [2, 4, 6, 8]
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(main()) < 1.0


def test_the_time_per_input_is_unknown_until_a_batch_ran_then_measured() -> None:
    async def main() -> tuple[float | None, float | None]:
        batcher = make(Doubler(delay_s=0.05), max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        before = batcher.seconds_per_item
        await one(batcher, 1)
        after = batcher.seconds_per_item
        await batcher.stop()
        return before, after

    before, after = asyncio.run(main())
    assert before is None
    assert after is not None and after >= 0.05


def test_a_raising_batch_fails_every_input_in_it_and_the_worker_survives() -> None:
    async def main() -> tuple[list[BaseException | Completed[int]], Completed[int], Doubler]:
        infer = Doubler(fail_on=lambda v: v < 0)
        observer = Observer()
        batcher = make(infer, observer, max_batch_size=3, max_wait_s=5.0)
        batcher.start()
        outcomes = await asyncio.gather(
            one(batcher, 1), one(batcher, -1), one(batcher, 2), return_exceptions=True
        )
        after = await batcher.run_many([5, 6, 7])
        await batcher.stop()
        assert observer.calls == [(3, 3), (3, 0)]
        observer.check_reports()
        return list(outcomes), after[0], infer

    outcomes, after, infer = asyncio.run(main())
    assert infer.batches[0] == [1, -1, 2]  # one batch
    assert all(isinstance(o, BatchFailedError) for o in outcomes)
    assert all("batch of 3 inputs" in str(o) for o in outcomes)
    assert after.value == 10  # the worker carried on


def test_an_input_the_batch_function_refuses_fails_alone_and_its_batch_is_answered() -> None:
    async def main() -> tuple[list[BaseException | Completed[int]], Doubler, Observer]:
        infer = Doubler(refuse=lambda v: v == 13)
        observer = Observer()
        batcher = make(infer, observer, max_batch_size=3, max_wait_s=5.0)
        batcher.start()
        outcomes = await asyncio.gather(
            one(batcher, 1), one(batcher, 13), one(batcher, 2), return_exceptions=True
        )
        await batcher.stop()
        return list(outcomes), infer, observer

    outcomes, infer, observer = asyncio.run(main())
    assert infer.batches == [[1, 13, 2]]  # one batch, other callers' inputs in it
    first, refused, third = outcomes
    assert isinstance(first, Completed) and first.value == 2 and first.batch_size == 3
    assert isinstance(third, Completed) and third.value == 4
    assert isinstance(refused, ItemFailedError)
    assert str(refused) == "13 is not doubled (a failure of this input alone, in a batch of 3)"
    assert isinstance(refused.__cause__, ValueError)
    assert observer.calls == [(3, 1)]
    observer.check_reports()


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
    assert isinstance(failed, BatchFailedError)
    assert after.value == 8


def test_the_worker_survives_an_error_outside_the_batch_function() -> None:
    async def main() -> tuple[Completed[int], Completed[int]]:
        batcher = make(Doubler(), Observer(fail_first=True), max_batch_size=1, max_wait_s=0.0)
        batcher.start()
        first = await one(batcher, 1)  # answered before the observer raised
        second = await one(batcher, 2)
        await batcher.stop()
        return first, second

    first, second = asyncio.run(main())
    assert (first.value, second.value) == (2, 4)


def test_an_expired_input_is_not_run_and_its_caller_gets_expired() -> None:
    async def main() -> tuple[BaseException | Completed[int], Completed[int], Doubler]:
        infer, batcher, running = await held_on_first_input(max_batch_size=4)
        loop = asyncio.get_running_loop()
        (late,) = batcher.submit([2], expires_at=loop.time())  # expired when the worker comes
        on_time = batcher.submit([3])
        infer.release()
        outcomes = await asyncio.gather(late, return_exceptions=True)
        await asyncio.gather(*running, *on_time)
        after = await one(batcher, 4)
        await batcher.stop()
        return outcomes[0], after, infer

    late, after, infer = asyncio.run(main())
    assert isinstance(late, ExpiredError)
    assert "expired after" in str(late) and "before its batch ran" in str(late)
    assert infer.batches == [[1], [3], [4]]  # the expired input never ran
    assert after.value == 8


def test_a_caller_that_stops_waiting_withdraws_its_inputs() -> None:
    async def main() -> Doubler:
        infer, batcher, running = await held_on_first_input(max_batch_size=1)
        waiting = asyncio.ensure_future(batcher.run_many([2, 3]))
        await until(lambda: batcher.depth == 2, "two inputs queued")
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        infer.release()
        await asyncio.gather(*running)
        await one(batcher, 4)
        await batcher.stop()
        return infer

    assert asyncio.run(main()).batches == [[1], [4]]


def test_stop_drains_the_queue_then_refuses_new_work() -> None:
    async def main() -> tuple[list[int], BaseException | None]:
        batcher = make(Doubler(delay_s=0.01), max_batch_size=2, max_wait_s=1.0)
        batcher.start()
        futures = batcher.submit([1, 2, 3, 4, 5])
        await batcher.stop(timeout=5.0)
        values = [f.result().value for f in futures]
        refused: BaseException | None = None
        try:
            batcher.submit([6])
        except ClosedError as e:
            refused = e
        return values, refused

    values, refused = asyncio.run(main())
    assert values == [2, 4, 6, 8, 10]
    assert refused is not None and "it is stopping" in str(refused)


def test_a_batcher_not_started_takes_nothing() -> None:
    async def main() -> None:
        with pytest.raises(ClosedError, match="not started"):
            make(Doubler()).submit([1])

    asyncio.run(main())


def test_past_the_drain_timeout_the_running_batch_and_the_queue_are_dropped() -> None:
    async def main() -> tuple[list[BaseException | Completed[int]], float, Doubler]:
        infer, batcher, running = await held_on_first_input(max_batch_size=1)
        queued = batcher.submit([2, 3])
        started = time.perf_counter()
        await batcher.stop(timeout=0.05)
        stopped_after = time.perf_counter() - started
        outcomes = await asyncio.gather(*running, *queued, return_exceptions=True)
        infer.release()  # the thread the worker left behind finishes
        return list(outcomes), stopped_after, infer

    outcomes, stopped_after, infer = asyncio.run(main())
    assert all(isinstance(o, DroppedError) for o in outcomes), outcomes
    assert "after draining for 0.05 s" in str(outcomes[0])
    assert stopped_after < WAIT_S / 2  # did not wait for the blocked batch
    assert infer.batches == [[1]]  # the queued inputs never ran


def test_starting_twice_is_refused() -> None:
    async def main() -> None:
        batcher = make(Doubler())
        batcher.start()
        with pytest.raises(RuntimeError, match="already started"):
            batcher.start()
        await batcher.stop()

    asyncio.run(main())


@pytest.mark.parametrize(("option", "value"), [("max_batch_size", 0), ("max_wait_s", -0.001)])
def test_bad_settings_fail_at_construction(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        make(Doubler(), **{option: value})
