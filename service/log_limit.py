"""Log lines an attacker cannot flood: at most a few per kind and period, the rest counted.

Every answer is counted in the metrics (``dan_errors_total{reason}``), so the log
needs no line per request: a ``LogLimiter`` lets ``burst`` lines of one key (an
error reason) through per ``period_s`` seconds, drops the others, and the next
line of that key let through says how many were left out. ``RateLimitFilter`` does
the same for another library's logger (the HTTP server's warnings about invalid
requests or too many connections), keyed by the line's message template.
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


class _Budget:
    """A token bucket per key: ``burst`` lines, refilled at ``burst / period_s`` per second."""

    def __init__(self, burst: int, period_s: float, clock: Callable[[], float]) -> None:
        if burst < 1 or period_s <= 0:
            raise ValueError(f"expected burst >= 1 and period_s > 0, got {burst}, {period_s}")
        self.burst = burst
        self.rate = burst / period_s
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> int | None:
        """None if ``key`` is over its budget (the line is dropped), else how many lines of
        ``key`` were dropped since the last one let through."""
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            bucket.dropped += 1
            return None
        bucket.tokens -= 1.0
        dropped, bucket.dropped = bucket.dropped, 0
        return dropped


class LogLimiter:
    """Logs to ``logger`` at most ``burst`` lines per key and ``period_s``."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = DEFAULT_BURST,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self._budget = _Budget(burst, period_s, clock)

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
        dropped = self._budget.take(key)
        if dropped is None:
            return False
        if dropped:
            message += " (%d similar lines left out before this one)"
            args = (*args, dropped)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True


class RateLimitFilter(logging.Filter):
    """A filter passing at most ``burst`` records per message template and ``period_s`` at
    ``min_level`` and above (lower levels pass untouched)."""

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        period_s: float = DEFAULT_PERIOD_S,
        min_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.min_level = min_level
        self._budget = _Budget(burst, period_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return True
        dropped = self._budget.take(f"{record.name}:{record.msg}")
        if dropped is None:
            return False
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar lines left out before this one)"
        return True
