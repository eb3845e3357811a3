"""Start ``python -m service`` for a benchmark: a free loopback port, DAN_* settings, readiness.

The benchmarks measure the service as users run it, so they start the real
process (no in-process app) with only the settings they name; every other
``DAN_*`` variable of the caller's environment is left out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """``python -m service`` on 127.0.0.1 with the given settings (names without ``DAN_``)."""

    def __init__(self, settings: Mapping[str, object], log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / (
            f"dan-bench-service-{self.port}.log"
        )
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DAN_")}
        env.update({"DAN_HOST": "127.0.0.1", "DAN_PORT": str(self.port)})
        env.update({f"DAN_{k.upper()}": str(v) for k, v in settings.items()})
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=log, stderr=log
            )

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Return once ``/health/ready`` answers 200; exit with the log if it never does."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"service exited with {self.process.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"service not ready after {timeout:g} s:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the service drains its queue), then wait; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
