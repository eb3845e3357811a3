"""Admission: the one component that decides whether the service takes a request, and its deadline.

At the door, before a request's body is read, it is admitted or refused at once
(503 with Retry-After), for one of these reasons:

- ``shutting_down``: the service is stopping;
- ``not_ready``: the model is still loading or warming up;
- ``overloaded``: DAN_MAX_PENDING_REQUESTS requests are in progress;
- ``queue_wait_too_long``: the inference ahead of it (the faces queued, and one
  face for each admitted request still being prepared) x the recent inference
  time per face passes DAN_MAX_QUEUE_WAIT_MS. An idle queue always takes a
  request, as does one whose time per face is not known yet.

An admitted request holds a ``Ticket`` with its deadline (DAN_REQUEST_DEADLINE_MS
after it came); ``admit`` answers 504 ``deadline_exceeded`` once it passes, and
the request's faces carry it into the queue as their expiry. A request's faces
go to the batching queue through ``run`` only, all of them or none:
``queue_full`` when they do not fit in DAN_MAX_QUEUE_SIZE, ``queue_wait_too_long``
when the work ahead passes the longest wait or, with these faces, would outlast
the request's deadline. The batcher (``service.batching``) only carries out
what was decided here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.batching import Batcher, Completed
from service.config import Settings
from service.errors import (
    DeadlineExceededError,
    NotReadyError,
    OverloadedError,
    QueueFullError,
    QueueWaitTooLongError,
    ShuttingDownError,
)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Limits:
    """The bounds admission keeps, in seconds and counts."""

    max_pending_requests: int
    max_queue_size: int
    max_queue_wait_s: float
    request_deadline_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_pending_requests=settings.max_pending_requests,
            max_queue_size=settings.max_queue_size,
            max_queue_wait_s=settings.max_queue_wait_ms / 1000.0,
            request_deadline_s=settings.request_deadline_ms / 1000.0,
        )


class Ticket:
    """One admitted request: its deadline (event-loop time), and whether its faces are still
    being prepared (counted as one face of work on its way until they are queued)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.preparing = True
        self.done = False


class Admission(Generic[In, Out]):
    """Decides which requests the service takes, and queues their inputs on the batching queue
    it was opened with."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pending = 0  # admitted requests not finished
        self.preparing = 0  # admitted requests whose faces are not queued yet
        self._batcher: Batcher[In, Out] | None = None
        self._closing = False

    @property
    def is_open(self) -> bool:
        """Ready and not closing: new requests may be admitted."""
        return self._batcher is not None and not self._closing

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def batcher(self) -> Batcher[In, Out]:
        if self._batcher is None:
            raise RuntimeError("admission is not open yet: it has no batching queue")
        return self._batcher

    def open(self, batcher: Batcher[In, Out]) -> None:
        """Start admitting requests onto ``batcher`` (running: the model is warmed up)."""
        self._batcher = batcher

    def close(self) -> None:
        """Admit nothing more, and queue no more faces (shutdown)."""
        self._closing = True

    def expected_wait(self, arriving: int = 0) -> float:
        """Seconds of inference for the queued inputs and ``arriving`` more (0 while unknown)."""
        per_item = self.batcher.seconds_per_item
        if per_item is None:
            return 0.0
        return (self.batcher.depth + arriving) * per_item

    def enter(self) -> Ticket:
        """Admit a request at the door, or refuse it (``ServiceError``, all 503)."""
        if self._closing:
            raise ShuttingDownError("the service is shutting down and takes no new requests")
        if self._batcher is None:
            raise NotReadyError("the model is still loading or warming up; retry shortly")
        limits = self.limits
        if self.pending >= limits.max_pending_requests:
            raise OverloadedError(
                f"{self.pending} requests are in progress, the most this service takes "
                "(DAN_MAX_PENDING_REQUESTS); retry later"
            )
        ahead = self.expected_wait(self.preparing)
        if ahead > limits.max_queue_wait_s:
            raise QueueWaitTooLongError(
                f"about {ahead:.3f} s of inference is ahead of this request ({self.batcher.depth} "
                f"faces queued, {self.preparing} requests being prepared), more than the "
                f"{limits.max_queue_wait_s:.3f} s a face may wait (DAN_MAX_QUEUE_WAIT_MS); "
                "retry later"
            )
        ticket = Ticket(asyncio.get_running_loop().time() + limits.request_deadline_s)
        self.pending += 1
        self.preparing += 1
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """The request is finished (answered or failed)."""
        if ticket.done:
            return
        self._prepared(ticket)
        ticket.done = True
        self.pending -= 1

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[Ticket]:
        """Admit a request (or refuse it) for the ``async with`` block, which is cut short
        with ``DeadlineExceededError`` at the request's deadline."""
        ticket = self.enter()
        scope = asyncio.timeout_at(ticket.deadline)
        try:
            async with scope:
                yield ticket
        except TimeoutError:
            if not scope.expired():
                raise
            raise DeadlineExceededError(
                f"no answer within the deadline of {self.limits.request_deadline_s * 1000:g} ms"
            ) from None
        finally:
            self.leave(ticket)

    def check_queue(self, ticket: Ticket, count: int) -> None:
        """Whether ``count`` faces of an admitted request may be queued now; refused with a
        ``ServiceError`` saying why. From now on they count in the queue, not in preparation."""
        self._prepared(ticket)
        if self._closing:
            raise ShuttingDownError(
                "the service is shutting down; this request's faces were not queued"
            )
        now = asyncio.get_running_loop().time()
        if now >= ticket.deadline:
            raise DeadlineExceededError(
                "the request's deadline passed before its faces were queued "
                f"({self.limits.request_deadline_s * 1000:g} ms)"
            )
        limits = self.limits
        depth = self.batcher.depth
        if depth + count > limits.max_queue_size:
            raise QueueFullError(
                f"the inference queue holds {depth} of at most {limits.max_queue_size} faces "
                f"(DAN_MAX_QUEUE_SIZE) and cannot take {count} more; retry later"
            )
        ahead = self.expected_wait()
        if ahead > limits.max_queue_wait_s:
            raise QueueWaitTooLongError(
                f"the inference queue holds {depth} faces, about {ahead:.3f} s of work, more than "
                f"the {limits.max_queue_wait_s:.3f} s a face may wait (DAN_MAX_QUEUE_WAIT_MS); "
                "retry later"
            )
        wait = self.expected_wait(count)
        if now + wait > ticket.deadline:
            raise QueueWaitTooLongError(
                f"the inference queue holds {depth} faces; with this request's {count} that is "
                f"about {wait:.3f} s of work, more than the {ticket.deadline - now:.3f} s left "
                "before its deadline; retry later"
            )

    async def run(self, ticket: Ticket, values: Sequence[In]) -> list[Completed[Out]]:
        """Queue an admitted request's inputs (all or none, see ``check_queue``) and wait for
        their outputs; they expire at the request's deadline."""
        self.check_queue(ticket, len(values))
        return await self.batcher.run_many(values, expires_at=ticket.deadline)

    def _prepared(self, ticket: Ticket) -> None:
        if ticket.preparing:
            ticket.preparing = False
            self.preparing -= 1
