"""A ``python -m service`` child process under test: readiness wait, log, graceful stop.

Shared by the service tests (tests/service) and the deployment tests (tests/deploy),
which start the same command in different environments.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import httpx


@dataclass
class ServiceProcess:
    """Subclasses say where the service listens (``url``) and their timeouts."""

    process: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.Client = field(init=False)

    client_timeout_s: ClassVar[float] = 30.0
    start_timeout_s: ClassVar[float] = 90.0
    stop_timeout_s: ClassVar[float] = 30.0
    poll_s: ClassVar[float] = 0.05

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=self.client_timeout_s)

    @property
    def url(self) -> str:
        raise NotImplementedError

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float | None = None) -> None:
        timeout = self.start_timeout_s if timeout is None else timeout
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"service exited with {self.process.returncode} before ready:\n{self.log()}"
                )
            try:
                if self.client.get("/health/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(self.poll_s)
        raise AssertionError(f"service not ready after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then wait; returns the exit code (kills after ``timeout``)."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout_s if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    @contextmanager
    def ready(self) -> Iterator[Self]:
        """Ready for the ``with`` block; afterwards it must stop cleanly on SIGTERM (exit 0)."""
        try:
            self.wait_ready()
            yield self
        finally:
            code = self.stop()
            assert code == 0, f"service exited with {code} after SIGTERM:\n{self.log()}"
