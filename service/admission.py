"""Admission: the one component that decides whether the service takes a request, and its deadline.

At the door, before a request's body is read, it is refused at once (503 with
Retry-After, ``check_door``) if it would be refused now; once its body is in (read
by the HTTP layer within DAN_BODY_TIMEOUT_MS), it is admitted (``enter``: only then
does it count as pending and its deadline start) or refused, for one of these reasons:

- ``shutting_down``: the service is stopping;
- ``not_ready``: the model is still loading or warming up;
- ``overloaded``: DAN_MAX_PENDING_REQUESTS requests are in progress;
- ``queue_wait_too_long``: the work ahead of it passes DAN_MAX_QUEUE_WAIT_MS. The
  work ahead is the preparation ahead (the estimated decoding and face-detection
  seconds of the requests being prepared, shared by the DAN_DECODE_THREADS
  threads) plus the inference ahead (the faces queued, and one face for each
  admitted request still being prepared, x the recent inference time per face).
  An idle service always takes a request, as does one whose costs are not known yet.

Once its header says how many megapixels an image has, the request is checked
again (``start_preparing``) with its own estimated preparation cost
(``PreparationCost``: seconds = base + per-megapixel, fitted to the recent requests
with and without face detection apart) and, admitted, counts that cost until its
faces are cut (``finish_preparing``, which feeds the measured seconds back): a small
upload of many megapixels counts as what it costs, not as what it weighs.

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


# Weight of the latest request in the fit of preparation seconds to megapixels.
COST_WEIGHT = 0.1


@dataclass(frozen=True)
class Limits:
    """The bounds admission keeps, in seconds and counts."""

    max_pending_requests: int
    max_queue_size: int
    max_queue_wait_s: float
    request_deadline_s: float
    preparation_threads: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_pending_requests=settings.max_pending_requests,
            max_queue_size=settings.max_queue_size,
            max_queue_wait_s=settings.max_queue_wait_ms / 1000.0,
            request_deadline_s=settings.request_deadline_ms / 1000.0,
            preparation_threads=settings.decode_threads,
        )


class LinearCost:
    """seconds ~ base + per_unit x units, fitted to recent measurements (exponentially
    weighted least squares; both terms kept >= 0). None until measured."""

    def __init__(self, weight: float = COST_WEIGHT) -> None:
        self.weight = weight
        self._sums: list[float] | None = None  # weights, x, x^2, y, x*y (weighted means)

    def observe(self, units: float, seconds: float) -> None:
        new = [1.0, units, units * units, seconds, units * seconds]
        if self._sums is None:
            self._sums = new
        else:
            w = self.weight
            self._sums = [
                (1 - w) * old + w * value for old, value in zip(self._sums, new, strict=True)
            ]

    def coefficients(self) -> tuple[float, float] | None:
        """(base seconds, seconds per unit), or None before the first measurement."""
        if self._sums is None:
            return None
        n, x, xx, y, xy = self._sums
        mean_x, mean_y = x / n, y / n
        variance = xx / n - mean_x * mean_x
        if variance > 1e-12 * max(1.0, mean_x * mean_x):
            slope = (xy / n - mean_x * mean_y) / variance
            base = mean_y - slope * mean_x
            if slope >= 0 and base >= 0:
                return base, slope
        # One size seen, or a fit with a negative term: all of it per unit (larger uploads
        # are then estimated dearer, never cheaper, than they are).
        return (0.0, mean_y / mean_x) if mean_x > 0 else (mean_y, 0.0)

    def estimate(self, units: float) -> float | None:
        fitted = self.coefficients()
        if fitted is None:
            return None
        base, slope = fitted
        return base + slope * units


class PreparationCost:
    """Estimated seconds to prepare a request (decode, find faces, cut crops) from its
    megapixels: one fit for requests whose faces the detector finds, one for the others."""

    def __init__(self) -> None:
        self._fits = {True: LinearCost(), False: LinearCost()}

    def observe(self, megapixels: float, detect: bool, seconds: float) -> None:
        self._fits[detect].observe(megapixels, seconds)

    def estimate(self, megapixels: float, detect: bool) -> float:
        """Seconds; 0 while nothing of the kind was measured yet."""
        return self._fits[detect].estimate(megapixels) or 0.0


class Ticket:
    """One admitted request: its deadline (event-loop time), whether its faces are still
    being prepared (counted as one face of work on its way until they are queued), and the
    estimated seconds of its preparation still counted ahead of others."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.preparing = True
        self.done = False
        self.megapixels = 0.0
        self.detect = False
        self.preparation_s = 0.0  # counted in Admission.preparation_s until finished


class Admission(Generic[In, Out]):
    """Decides which requests the service takes, and queues their inputs on the batching queue
    it was opened with."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pending = 0  # admitted requests not finished
        self.preparing = 0  # admitted requests whose faces are not queued yet
        self.preparation_s = 0.0  # estimated seconds of the preparations started, not finished
        self.costs = PreparationCost()
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

    def preparation_ahead(self) -> float:
        """Seconds until a preparation thread is free for a request arriving now."""
        return self.preparation_s / self.limits.preparation_threads

    def work_ahead(self, ticket: Ticket | None = None) -> float:
        """Seconds of preparation and inference ahead of a request arriving now (or of the
        admitted request of ``ticket``, itself not counted)."""
        others = self.preparing - (1 if ticket is not None and ticket.preparing else 0)
        return self.preparation_ahead() + self.expected_wait(others)

    def _refuse_if_too_long(self, when: str, ticket: Ticket | None = None) -> None:
        ahead = self.work_ahead(ticket)
        limit = self.limits.max_queue_wait_s
        if ahead > limit:
            raise QueueWaitTooLongError(
                f"about {ahead:.3f} s of work is ahead of this request{when} "
                f"({self.batcher.depth} faces queued, {self.preparing} requests being prepared, "
                f"{self.preparation_ahead():.3f} s of their decoding and face detection), more "
                f"than the {limit:.3f} s a face may wait (DAN_MAX_QUEUE_WAIT_MS); retry later"
            )

    def enter(self) -> Ticket:
        """Admit a request whose body is in, or refuse it (``ServiceError``, all 503)."""
        self.check_door()
        ticket = Ticket(asyncio.get_running_loop().time() + self.limits.request_deadline_s)
        self.pending += 1
        self.preparing += 1
        return ticket

    def check_door(self) -> None:
        """Refuse a request at once if it would be refused now (before its body is read: a
        refusal costs nothing); it takes no place until ``enter``."""
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
        self._refuse_if_too_long("")

    def leave(self, ticket: Ticket) -> None:
        """The request is finished (answered or failed)."""
        if ticket.done:
            return
        self._uncount_preparation(ticket)
        self._prepared(ticket)
        ticket.done = True
        self.pending -= 1

    def start_preparing(self, ticket: Ticket, megapixels: float, detect: bool) -> None:
        """An admitted request's image is ``megapixels`` large (its header says) and its faces
        are to be found by the detector (``detect``) or not: refused (``queue_wait_too_long``)
        if the work ahead now passes the longest wait, else its estimated preparation counts
        ahead of the requests after it until ``finish_preparing``."""
        self._refuse_if_too_long(" once its image's size was known", ticket)
        ticket.megapixels = megapixels
        ticket.detect = detect
        ticket.preparation_s = self.costs.estimate(megapixels, detect)
        self.preparation_s += ticket.preparation_s

    def finish_preparing(self, ticket: Ticket, seconds: float) -> None:
        """The request's image was decoded and its faces cut in ``seconds`` (measured in the
        thread that did it): its estimate no longer counts, the measurement refits the costs."""
        self._uncount_preparation(ticket)
        self.costs.observe(ticket.megapixels, ticket.detect, seconds)

    def _uncount_preparation(self, ticket: Ticket) -> None:
        self.preparation_s = max(0.0, self.preparation_s - ticket.preparation_s)
        ticket.preparation_s = 0.0
        if self.preparation_s < 1e-9:
            self.preparation_s = 0.0

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
