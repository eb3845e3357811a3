"""The batching queue: inputs from concurrent requests run together on one inference worker.

Each input becomes an item (value, future, enqueue time, deadline) on a
bounded queue. The worker takes up to ``max_batch_size`` items, waiting at most
``max_wait_s`` after the first one was queued for more to arrive, runs the
batch function in its own thread (off the event loop) and sets one result per
future. A full queue refuses at once (``QueueFullError``), and so does a queue
whose expected wait (queued items x the recent inference time per item) passes
``max_queue_wait_s`` or would outlast the request's deadline: a bound in time
keeps the latency of accepted requests bounded however fast the hardware is,
and as it counts only the work ahead, an idle queue always takes a request. An
item whose deadline passed before its batch
ran fails with ``DeadlineExceededError``; a batch that raises fails every
future in it with ``InferenceFailedError`` and the worker goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    QueueFullError,
    ShuttingDownError,
)

log = logging.getLogger(__name__)

# Weight of the latest batch in the running estimate of inference time per item.
ESTIMATE_WEIGHT = 0.2

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Completed(Generic[Out]):
    """One input's output and how its batch went."""

    value: Out
    queue_wait_s: float  # from enqueue to the start of its batch
    inference_s: float  # the batch function's run time
    batch_size: int


@dataclass
class _Item(Generic[In, Out]):
    value: In
    future: asyncio.Future[Completed[Out]]
    enqueued_at: float  # event-loop time
    deadline: float  # event-loop time


class BatchObserver(Protocol):
    """Told about every batch the worker ran (metrics implement it)."""

    def batch_done(
        self, size: int, queue_waits: Sequence[float], inference_s: float, failed: bool
    ) -> None: ...


class Batcher(Generic[In, Out]):
    """A bounded queue and one worker running ``infer`` over batches of queued inputs."""

    def __init__(
        self,
        infer: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_size: int,
        max_queue_wait_s: float = float("inf"),
        executor: Executor | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        if max_queue_wait_s <= 0:
            raise ValueError(f"max_queue_wait_s must be > 0, got {max_queue_wait_s}")
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_size = max_queue_size
        self.max_queue_wait_s = max_queue_wait_s
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._observer = observer
        self._items: deque[_Item[In, Out]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._seconds_per_item: float | None = None  # running estimate, None until a batch ran

    @property
    def depth(self) -> int:
        """Inputs waiting in the queue (including ones whose callers gave up)."""
        return len(self._items)

    def expected_wait(self, extra: int = 0) -> float:
        """Seconds until ``extra`` more items would have run, from recent batches (0 if none)."""
        if self._seconds_per_item is None:
            return 0.0
        return (len(self._items) + extra) * self._seconds_per_item

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._task is not None:
            raise RuntimeError("the batcher was already started")
        self._task = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    def check_wait(self, arriving: int = 0) -> None:
        """``QueueFullError`` if the work ahead (queued items, plus ``arriving`` more on their
        way) passes ``max_queue_wait_s``."""
        ahead = self.expected_wait(arriving)
        if ahead > self.max_queue_wait_s:
            raise QueueFullError(
                f"the inference queue holds {len(self._items)} faces (and {arriving} more are on "
                f"their way), about {ahead:.2f} s of work, more than the "
                f"{self.max_queue_wait_s:.2f} s a face may wait; retry later"
            )

    def submit_many(
        self, values: Sequence[In], deadline: float
    ) -> list[asyncio.Future[Completed[Out]]]:
        """Queue all of ``values`` or none (``QueueFullError``); ``deadline`` in event-loop time."""
        if self._closing or not self.running:
            raise ShuttingDownError("the service is shutting down and takes no new work")
        if len(self._items) + len(values) > self.max_queue_size:
            raise QueueFullError(
                f"the inference queue holds {len(self._items)} of at most {self.max_queue_size} "
                f"faces and cannot take {len(values)} more; retry later"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.check_wait()
        wait = self.expected_wait(len(values))
        if now + wait > deadline:
            raise QueueFullError(
                f"the inference queue holds {len(self._items)} faces, about {wait:.2f} s of work, "
                f"more than the {max(deadline - now, 0.0):.2f} s left before the request's "
                "deadline; retry later"
            )
        futures: list[asyncio.Future[Completed[Out]]] = []
        for value in values:
            future: asyncio.Future[Completed[Out]] = loop.create_future()
            self._items.append(_Item(value, future, now, deadline))
            futures.append(future)
        self._wakeup.set()
        return futures

    async def run_many(self, values: Sequence[In], deadline: float) -> list[Completed[Out]]:
        """Queue ``values`` and wait for all their outputs until ``deadline`` (event-loop time)."""
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            raise DeadlineExceededError(
                "the request's deadline passed before its faces were queued"
            )
        futures = self.submit_many(values, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise DeadlineExceededError(
                f"the request's deadline passed while {sum(not f.done() for f in futures)} of its "
                f"{len(futures)} faces waited for inference ({self.depth} faces queued)"
            ) from None
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # the worker skips cancelled items

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued (at most ``timeout`` s), stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.warning("queue not drained after %s s; %d faces dropped", timeout, self.depth)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        while self._items:
            item = self._items.popleft()
            if not item.future.done():
                item.future.set_exception(
                    ShuttingDownError("the service shut down before this face ran")
                )
        if self._own_executor:
            self._executor.shutdown(wait=False)

    async def _work(self) -> None:
        while True:
            try:
                batch = await self._collect()
                if batch is None:
                    return
                if batch:
                    await self._execute(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker must outlive any one batch
                log.exception("batching worker error; carrying on")
                await asyncio.sleep(0)

    async def _collect(self) -> list[_Item[In, Out]] | None:
        """The next batch (possibly empty), or None once closing and drained."""
        loop = asyncio.get_running_loop()
        while not self._items:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        flush_at = self._items[0].enqueued_at + self.max_wait_s
        while len(self._items) < self.max_batch_size and not self._closing:
            remaining = flush_at - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Item[In, Out]] = []
        now = loop.time()
        while self._items and len(batch) < self.max_batch_size:
            item = self._items.popleft()
            if item.future.done():  # its caller gave up (deadline, disconnect)
                continue
            if now > item.deadline:
                item.future.set_exception(
                    DeadlineExceededError(
                        f"the request's deadline passed after {now - item.enqueued_at:.3f} s in "
                        "the inference queue"
                    )
                )
                continue
            batch.append(item)
        return batch

    async def _execute(self, batch: list[_Item[In, Out]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        waits = [started - item.enqueued_at for item in batch]
        values = [item.value for item in batch]
        try:
            outputs = await loop.run_in_executor(self._executor, self._infer, values)
            if len(outputs) != len(batch):
                raise RuntimeError(
                    f"the batch function returned {len(outputs)} outputs for {len(batch)} inputs"
                )
        except Exception:
            elapsed = loop.time() - started
            log.exception("inference failed for a batch of %d; failing its requests", len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(
                        InferenceFailedError(
                            f"inference failed for the batch of {len(batch)} faces this one was "
                            "in; the cause is in the service log"
                        )
                    )
            if self._observer is not None:
                self._observer.batch_done(len(batch), waits, elapsed, failed=True)
            return
        elapsed = loop.time() - started
        per_item = elapsed / len(batch)
        previous = self._seconds_per_item
        self._seconds_per_item = (
            per_item
            if previous is None
            else (1 - ESTIMATE_WEIGHT) * previous + ESTIMATE_WEIGHT * per_item
        )
        for item, output, wait in zip(batch, outputs, waits, strict=True):
            if not item.future.done():
                item.future.set_result(Completed(output, wait, elapsed, len(batch)))
        if self._observer is not None:
            self._observer.batch_done(len(batch), waits, elapsed, failed=False)
