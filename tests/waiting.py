"""Waiting in a test for what it can observe (a gate entered, a queue depth, admission's
counts), with a bound: never for a guessed time. One definition for the in-process tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WAIT_S = 20.0  # the longest a test waits for something it expects to happen


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait, yielding to the event loop, until ``condition`` holds; fail after ``timeout``."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"never saw {what}"
        await asyncio.sleep(0.001)
