"""service.log_limit: a few lines per kind and period get through, the rest are counted."""

from __future__ import annotations

import logging

import pytest

from service.log_limit import LogLimiter, RateLimitFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_per_key_then_one_line_per_refill_saying_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = LogLimiter(logging.getLogger("test.limit"), burst=3, period_s=3.0, clock=clock)
    with caplog.at_level(logging.INFO, "test.limit"):
        logged = [limiter.log("queue_full", logging.INFO, "refused %d", i) for i in range(10)]
        assert limiter.log("other", logging.INFO, "another kind")  # its own budget
        clock.now = 1.0  # one line's worth refilled
        assert limiter.log("queue_full", logging.INFO, "refused %d", 10)
        assert not limiter.log("queue_full", logging.INFO, "refused %d", 11)
    assert logged == [True] * 3 + [False] * 7
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "refused 0",
        "refused 1",
        "refused 2",
        "another kind",
        "refused 10 (7 similar lines left out before this one)",
    ]


def test_a_level_not_logged_costs_no_budget(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.limit.quiet")
    logger.setLevel(logging.WARNING)
    limiter = LogLimiter(logger, burst=1, period_s=60.0, clock=Clock())
    assert not limiter.log("k", logging.INFO, "not enabled")
    assert limiter.log("k", logging.WARNING, "enabled")


def test_the_filter_limits_another_librarys_warnings_by_message_template() -> None:
    clock = Clock()
    limit = RateLimitFilter(burst=2, period_s=60.0, clock=clock)

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, None, None)

    passed = [limit.filter(record("Invalid HTTP request received.")) for _ in range(5)]
    assert passed == [True, True, False, False, False]
    assert limit.filter(record("Exceeded concurrency limit."))
    assert all(limit.filter(record("debug line", logging.DEBUG)) for _ in range(5))
    clock.now = 30.0
    again = record("Invalid HTTP request received.")
    assert limit.filter(again)
    assert again.getMessage() == (
        "Invalid HTTP request received. (3 similar lines left out before this one)"
    )
