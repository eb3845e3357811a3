"""Log lines an attacker cannot flood: at most a few per reason and period, the rest counted.

Every answer is counted in the metrics (``dan_errors_total{reason}``), so the log
needs no line per request: a ``LogLimiter`` lets ``burst`` lines of one key (an
error reason) through per ``period_s`` seconds, drops the others, and the next
line of that key let through says how many were left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BURST = 10
DEFAULT_PERIOD_S = 60.0


@dataclass
class _Bucket:
    tokens: float
    updated: float
    dropped: int = 0


class LogLimiter:
    """A token bucket per key: ``burst`` lines, refilled at ``burst / period_s`` per second."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = DEFAULT_BURST,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or period_s <= 0:
            raise ValueError(f"expected burst >= 1 and period_s > 0, got {burst}, {period_s}")
        self.logger = logger
        self.burst = burst
        self.rate = burst / period_s
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def log(
        self,
        key: str,
        level: int,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``message % args`` at ``level`` (with ``exc_info``'s traceback) unless ``key`` is
        over its budget; True if logged."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            bucket.dropped += 1
            return False
        bucket.tokens -= 1.0
        if bucket.dropped:
            message += " (%d similar lines left out before this one)"
            args = (*args, bucket.dropped)
            bucket.dropped = 0
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True
