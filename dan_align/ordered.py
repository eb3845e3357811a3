"""A few requests in flight at once, answers taken in the order they were asked.

The service batches the faces of concurrent requests, so a client with a
handful of requests in flight keeps it busy; ``ordered_map`` runs ``fn`` on a
small thread pool with at most ``concurrency`` items in flight and yields
``(item, future)`` in the items' order. Items are drawn from the iterable
only as room frees up, so a long video is never read ahead by more than that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], concurrency: int
) -> Iterator[tuple[T, Future[R]]]:
    """``(item, future of fn(item))`` in order, at most ``concurrency`` running at once.

    Closing the iterator early cancels what has not started and waits for what has.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    window: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="dan-align") as pool:
        try:
            for item in items:
                window.append((item, pool.submit(fn, item)))
                if len(window) >= concurrency:
                    yield window.popleft()
            while window:
                yield window.popleft()
        finally:
            for _, future in window:
                future.cancel()
