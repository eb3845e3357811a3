"""The one helper that runs the service as a process, for the benchmarks and the tests.

The benchmarks measure the service as users run it, and the service and
deployment tests check it the same way, so both start the real process (no
in-process app): ``ServiceProcess.launch`` runs ``python -m service`` on a free
loopback port with only the ``DAN_*`` settings it is given (every other
``DAN_*`` variable of the caller's environment is left out);
``ServiceProcess.start`` runs any command with a prepared environment (the
deployment tests' emulated image). Either way the output goes to a log file,
``wait_ready`` waits for ``/health/ready``, ``stop`` sends SIGTERM and waits,
and ``ready()`` does all three around a ``with`` block, failing if the service
does not stop cleanly. Failures raise ``ServiceError`` with the log.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import httpx

from training.paths import REPO_ROOT

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0  # start-up, warm-up included, on a loaded machine
STOP_TIMEOUT_S = 60.0  # SIGTERM to exit: the service drains its queue first
CLIENT_TIMEOUT_S = 60.0
POLL_S = 0.05
SERVICE_COMMAND = (sys.executable, "-m", "service")


class ServiceError(RuntimeError):
    """The service process exited, never got ready, or did not stop cleanly (its log attached)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def service_env(
    settings: Mapping[str, object], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default: this process's environment) without its ``DAN_*`` variables, then
    ``DAN_<NAME>`` for each setting (names without ``DAN_``, any case)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.upper().startswith("DAN_")}
    env.update({f"DAN_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class ServiceProcess:
    """A started service process: where it listens (``host``, ``port``, ``url``), the
    environment it was given, its log, and an HTTP ``client`` for its URL."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        log_path: Path,
        env: Mapping[str, str],
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        client_timeout_s: float = CLIENT_TIMEOUT_S,
    ) -> None:
        self.process = process
        self.log_path = log_path
        self.env = dict(env)
        self.host = self.env["DAN_HOST"]
        self.port = int(self.env["DAN_PORT"])
        self.url = f"http://{self.host}:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.client = httpx.Client(base_url=self.url, timeout=client_timeout_s)

    @classmethod
    def start(
        cls,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path = REPO_ROOT,
    ) -> Self:
        """Run ``command`` with exactly ``env`` (its ``DAN_HOST`` and ``DAN_PORT`` say where it
        listens), stdout and stderr into ``log_path``; does not wait for it."""
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                list(command), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT
            )
        log.info("started %s (pid %d); log %s", " ".join(command), process.pid, log_path)
        return cls(process, log_path, env)

    @classmethod
    def launch(
        cls,
        settings: Mapping[str, object],
        log_dir: Path | None = None,
    ) -> Self:
        """``python -m service`` from the repository on 127.0.0.1 and a free port (unless
        ``settings`` names one), with these ``DAN_*`` settings and no others; the log is
        ``service-PORT.log`` in ``log_dir`` (default: the temporary folder)."""
        given = {k.lower(): v for k, v in settings.items()}
        given.setdefault("host", "127.0.0.1")
        given.setdefault("port", free_port())
        folder = Path(tempfile.gettempdir()) if log_dir is None else log_dir
        log_path = folder / f"service-{given['port']}.log"
        return cls.start(SERVICE_COMMAND, service_env(given), log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once ``/health/ready`` answers 200; ``ServiceError`` if the process exits
        first or ``timeout`` (default: ``start_timeout_s``) passes."""
        timeout = self.start_timeout_s if timeout is None else timeout
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"service exited with {self.process.returncode} before it was ready:\n"
                    f"{self.log()}"
                )
            try:
                if self.client.get("/health/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet, or too busy to answer within 2 s
            time.sleep(POLL_S)
        raise ServiceError(f"service not ready after {timeout:g} s:\n{self.log()}")

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM (the service drains its queue), then wait; killed after ``timeout`` (default:
        ``stop_timeout_s``). The exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout_s if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                log.warning("service pid %d ignored SIGTERM; killing it", self.process.pid)
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def wait_exit(self, timeout: float) -> int:
        """For a service expected to stop by itself: its exit code; ``ServiceError`` (after
        killing it) if it still runs after ``timeout`` s."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ServiceError(
                f"service still running after {timeout:g} s:\n{self.log()}"
            ) from None
        finally:
            self.client.close()
        return int(code)

    @contextmanager
    def ready(self) -> Iterator[Self]:
        """Ready for the ``with`` block; afterwards stopped by SIGTERM, which must end it with
        exit code 0 (``ServiceError`` otherwise)."""
        try:
            self.wait_ready()
            yield self
        except BaseException:
            self.stop()
            raise
        code = self.stop()
        if code != 0:
            raise ServiceError(f"service exited with {code} after SIGTERM:\n{self.log()}")


@contextmanager
def service_url(url: str | None, settings: Mapping[str, object]) -> Iterator[str]:
    """``url`` if given (a service already running), else a ``python -m service`` started with
    ``settings``, ready for the block and stopped after it."""
    if url is not None:
        yield url
        return
    service = ServiceProcess.launch(settings)
    log.info("starting python -m service at %s (log %s)", service.url, service.log_path)
    with service.ready():
        yield service.url
