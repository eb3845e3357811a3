"""The batching queue: inputs from concurrent callers run together on one worker.

A generic library: it knows nothing of HTTP and decides no admission. Callers
queue inputs (``submit``, or ``run_many``, which also waits for them), each
with an optional expiry in event-loop time. One worker takes up to
``max_batch_size`` items, waiting at most ``max_wait_s`` after the first one
was queued for more to arrive, runs the batch function in its own thread (off
the event loop) and sets one result per future. The batch function returns one
outcome per input: its output, or an ``Exception`` that fails that input alone.

Failures are this module's own exceptions, all ``BatchingError``:

- ``ItemFailedError``: the batch function returned an exception for this input;
  the other inputs of its batch are answered;
- ``BatchFailedError``: the batch function raised (or returned the wrong number
  of outcomes): every input of the batch fails, and the worker goes on;
- ``ExpiredError``: the input's expiry passed before its batch ran; it is not run;
- ``DroppedError``: ``stop`` gave up draining (its timeout) before this input
  was answered;
- ``ClosedError``: the batcher is not running (not started, or stopped).

The queue has no bound of its own: how much to take is the caller's decision
(``service.admission``), helped by ``depth`` and ``seconds_per_item``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

# Weight of the latest batch in the running estimate of inference time per item.
ESTIMATE_WEIGHT = 0.2
NEVER = float("inf")  # the expiry of an input that never expires

In = TypeVar("In")
Out = TypeVar("Out")


class BatchingError(Exception):
    """An input of the batching queue did not get its output; the subclass says why."""


class ClosedError(BatchingError):
    """The batcher is not running (not started yet, or stopped) and takes no input."""


class ExpiredError(BatchingError):
    """The input's expiry passed while it waited in the queue; it was not run."""


class BatchFailedError(BatchingError):
    """The batch function raised for the batch this input was in."""


class ItemFailedError(BatchingError):
    """The batch function returned an exception for this input alone."""


class DroppedError(BatchingError):
    """The batcher stopped (drain timeout) before this input was answered."""


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
    expires_at: float  # event-loop time


class BatchObserver(Protocol):
    """Told about every batch the worker ran (metrics implement it)."""

    def batch_done(
        self, size: int, queue_waits: Sequence[float], inference_s: float, failed: int
    ) -> None:
        """``failed``: inputs of the batch that did not get an output (all when it raised)."""
        ...


class Batcher(Generic[In, Out]):
    """A queue and one worker running ``infer`` over batches of queued inputs."""

    def __init__(
        self,
        infer: Callable[[Sequence[In]], Sequence[Out | Exception]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        executor: Executor | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._observer = observer
        self._items: deque[_Item[In, Out]] = deque()
        self._running_batch: list[_Item[In, Out]] = []  # the batch in the batch function
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._seconds_per_item: float | None = None  # running estimate, None until a batch ran

    @property
    def depth(self) -> int:
        """Inputs waiting in the queue (including ones whose callers gave up)."""
        return len(self._items)

    @property
    def seconds_per_item(self) -> float | None:
        """Recent run time of the batch function per input (None until a batch ran)."""
        return self._seconds_per_item

    @property
    def running(self) -> bool:
        """Started, not stopping: ``submit`` takes inputs."""
        return self._task is not None and not self._task.done() and not self._closing

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._task is not None:
            raise RuntimeError("the batcher was already started")
        self._task = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    def submit(
        self, values: Sequence[In], expires_at: float = NEVER
    ) -> list[asyncio.Future[Completed[Out]]]:
        """Queue ``values``; items still queued at ``expires_at`` (event-loop time) fail with
        ``ExpiredError`` instead of running. ``ClosedError`` unless running."""
        if not self.running:
            state = "stopping" if self._closing else "not started"
            raise ClosedError(f"the batching queue takes no inputs: it is {state}")
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures: list[asyncio.Future[Completed[Out]]] = []
        for value in values:
            future: asyncio.Future[Completed[Out]] = loop.create_future()
            self._items.append(_Item(value, future, now, expires_at))
            futures.append(future)
        self._wakeup.set()
        return futures

    async def run_many(
        self, values: Sequence[In], expires_at: float = NEVER
    ) -> list[Completed[Out]]:
        """Queue ``values`` and wait for all their outputs; the first failure is raised.

        If the caller stops waiting (cancelled, or one input failed), its inputs
        not yet run are withdrawn: the worker skips them."""
        futures = self.submit(values, expires_at)
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    async def stop(self, timeout: float | None = None) -> None:
        """Take no new inputs, run what is queued (for at most ``timeout`` s), stop the worker.

        Inputs not answered by then fail with ``DroppedError``."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                left = self.depth + len(self._running_batch)
                log.warning("queue not drained after %s s; %d inputs dropped", timeout, left)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        for item in [*self._running_batch, *self._items]:
            _fail(
                item,
                DroppedError(
                    f"the batching queue stopped after draining for {timeout} s, before this "
                    "input was answered"
                ),
            )
        self._running_batch = []
        self._items.clear()
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
            if now > item.expires_at:
                _fail(
                    item,
                    ExpiredError(
                        f"it expired after {now - item.enqueued_at:.3f} s in the queue, before "
                        "its batch ran"
                    ),
                )
                continue
            batch.append(item)
        return batch

    async def _execute(self, batch: list[_Item[In, Out]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        waits = [started - item.enqueued_at for item in batch]
        self._running_batch = batch  # failed by ``stop`` if the worker is cancelled in it
        try:
            outcomes = await loop.run_in_executor(
                self._executor, self._infer, [item.value for item in batch]
            )
            if len(outcomes) != len(batch):
                raise RuntimeError(
                    f"the batch function returned {len(outcomes)} outcomes for {len(batch)} inputs"
                )
        except Exception:
            self._running_batch = []
            elapsed = loop.time() - started
            log.exception("the batch function failed for a batch of %d; failing it", len(batch))
            for item in batch:
                _fail(
                    item,
                    BatchFailedError(
                        f"the batch function raised for the batch of {len(batch)} inputs this one "
                        "was in; the cause is in the log"
                    ),
                )
            if self._observer is not None:
                self._observer.batch_done(len(batch), waits, elapsed, failed=len(batch))
            return
        self._running_batch = []
        elapsed = loop.time() - started
        self._update_estimate(elapsed / len(batch))
        failed = 0
        for item, outcome, wait in zip(batch, outcomes, waits, strict=True):
            if isinstance(outcome, Exception):
                failed += 1
                error = ItemFailedError(
                    f"{outcome} (a failure of this input alone, in a batch of {len(batch)})"
                )
                error.__cause__ = outcome
                _fail(item, error)
            elif not item.future.done():
                item.future.set_result(Completed(outcome, wait, elapsed, len(batch)))
        if failed:
            log.warning("%d of the %d inputs of a batch failed alone", failed, len(batch))
        if self._observer is not None:
            self._observer.batch_done(len(batch), waits, elapsed, failed=failed)

    def _update_estimate(self, per_item: float) -> None:
        previous = self._seconds_per_item
        self._seconds_per_item = (
            per_item
            if previous is None
            else (1 - ESTIMATE_WEIGHT) * previous + ESTIMATE_WEIGHT * per_item
        )


def _fail(item: _Item[In, Out], error: BatchingError) -> None:
    if not item.future.done():
        item.future.set_exception(error)


def size_buckets(max_batch_size: int) -> tuple[int, ...]:
    """Batch sizes a model is run (and measured) at: powers of two below the maximum, and it."""
    sizes = {max_batch_size}
    size = 1
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))
