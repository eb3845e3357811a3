"""Slow and idle clients (issue 13, class 1), on a real server.

``python -m service`` on a loopback port with short bounds: uploads whose bodies trickle in
take no place among the requests in progress (DAN_MAX_PENDING_REQUESTS) and are answered
408 ``body_timeout`` at DAN_BODY_TIMEOUT_MS, their connections closed; a connection whose
headers never complete is closed at DAN_HEADER_TIMEOUT_S however the bytes trickle; an idle
one at DAN_KEEP_ALIVE_S after its answer; beyond DAN_MAX_CONNECTIONS the server answers 503.
Each test waits for what it can observe (a metric, a closed socket), with a bound.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from encoded_images import noise_png
from raw_http import (
    MULTIPART_TYPE,
    closed_by_server,
    connect,
    metric,
    multipart,
    read_answer,
    request_head,
    until,
    until_metric,
)
from service_support import serving

pytestmark = pytest.mark.process
BOX = [40.0, 40.0, 120.0, 120.0]
BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 3.0
KEEP_ALIVE_S = 1
MAX_CONNECTIONS = 40  # room for the service's other connection bounds (they must stay below it)
SLACK_S = 10.0  # a loaded machine may be late, never early


def face_png() -> bytes:
    return noise_png(6)


@pytest.fixture(scope="module")
def guarded(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serving(
        tmp_path_factory.mktemp("slow-clients"),
        model_path=tiny_model,
        detector="none",
        max_pending_requests=2,
        body_timeout_ms=BODY_TIMEOUT_S * 1000,
        header_timeout_s=HEADER_TIMEOUT_S,
        keep_alive_s=KEEP_ALIVE_S,
        max_connections=MAX_CONNECTIONS,
    ) as running:
        yield running


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock``; fails if it is still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    assert closed_by_server(sock), f"the server kept the connection open {seconds} s"
    return time.monotonic() - started


def test_trickling_uploads_take_no_place_and_get_408(guarded: Any) -> None:
    image = face_png()
    body = multipart(image, json.dumps([BOX]))
    timeouts = metric(guarded.client, "dan_errors_total", reason="body_timeout")
    slow = [connect(guarded.port) for _ in range(6)]  # three times DAN_MAX_PENDING_REQUESTS
    try:
        for sock in slow:
            sock.sendall(
                request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, len(body))
            )
            sock.sendall(body[:100])  # and nothing more
        until_metric(guarded.client, "dan_requests_in_flight", len(slow) + 1)  # + this scrape
        started = time.monotonic()
        complete = guarded.client.post(
            "/align", files={"image": ("f.png", image)}, data={"boxes": json.dumps([BOX])}
        )
        assert complete.status_code == 200, complete.text  # not 503 overloaded
        for sock in slow:
            status, headers, payload = read_answer(sock)
            assert status == 408, payload
            assert json.loads(payload)["error"] == "body_timeout"
            assert headers["connection"] == "close"
            closed_within(sock, SLACK_S)
        assert time.monotonic() - started < BODY_TIMEOUT_S + SLACK_S
    finally:
        for sock in slow:
            sock.close()
    after = metric(guarded.client, "dan_errors_total", reason="body_timeout")
    assert after == timeouts + len(slow)
    assert metric(guarded.client, "dan_errors_total", reason="overloaded") == 0


def test_a_connection_without_complete_headers_is_closed_at_the_header_timeout(
    guarded: Any,
) -> None:
    with connect(guarded.port) as idle:  # opened, nothing sent
        took = closed_within(idle, HEADER_TIMEOUT_S + SLACK_S)
    assert took >= HEADER_TIMEOUT_S * 0.8
    head = request_head("GET", "/health/live")
    with connect(guarded.port) as trickle:  # a byte every 0.25 s: activity does not extend it
        started = time.monotonic()
        trickle.settimeout(0.25)
        for byte in head[:-4]:
            trickle.sendall(bytes([byte]))
            if closed_by_server(trickle):
                break
        else:
            raise AssertionError("the headers were sent before the header timeout")
        took = time.monotonic() - started
    assert HEADER_TIMEOUT_S * 0.8 <= took < HEADER_TIMEOUT_S + SLACK_S


def test_an_idle_connection_is_closed_after_the_keep_alive_time(guarded: Any) -> None:
    with connect(guarded.port) as sock:
        sock.sendall(request_head("GET", "/health/live"))
        status, _, _ = read_answer(sock)
        assert status == 200
        took = closed_within(sock, KEEP_ALIVE_S + SLACK_S)
    assert took >= KEEP_ALIVE_S * 0.8


def test_beyond_the_most_connections_the_server_answers_503(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A server of its own whose header timeout outlasts the test, so the idle connections that
    # fill it stay open until the test closes them.
    with serving(
        tmp_path_factory.mktemp("crowded"),
        model_path=tiny_model,
        detector="none",
        max_pending_requests=2,
        header_timeout_s=600.0,
        max_connections=MAX_CONNECTIONS,
    ) as crowded:
        answers = probe_beyond_the_limit(crowded.port, crowded.process.pid)
    assert {status for status, _ in answers} <= {200, 503}, answers


def probe_beyond_the_limit(port: int, server_pid: int) -> list[tuple[int, bytes]]:
    """Hold MAX_CONNECTIONS connections open, then probe until one more is refused.

    The server is paused while the held connections open (the kernel completes them), so it
    accepts them all at once, as a busy machine's may. They send nothing: a request on one of
    them would itself be checked against the limit, and after such an accept every one would
    be refused and closed, and the probes would never meet the limit (held uploads did this
    under load). Idle, they only count.
    """
    held: list[socket.socket] = []
    try:
        os.kill(server_pid, signal.SIGSTOP)
        try:
            held += (connect(port) for _ in range(MAX_CONNECTIONS))
        finally:
            os.kill(server_pid, signal.SIGCONT)
        answers: list[tuple[int, bytes]] = []

        def one_more_refused() -> bool:
            # The kernel completes a connection before the server's accept loop takes it, so
            # on a busy machine the server may not count all the held ones yet: a probe that
            # it accepted under the limit is answered normally, and the next one is asked.
            # The held ones stay open, so the count only grows: this wait ends.
            with connect(port) as extra:
                extra.sendall(request_head("GET", "/health/live"))
                status, _, payload = read_answer(extra)
            answers.append((status, payload))
            return status == 503

        try:
            until(one_more_refused, "a connection beyond DAN_MAX_CONNECTIONS answered 503")
        except AssertionError as e:
            raise AssertionError(f"{e}; the last probes' answers: {answers[-3:]}") from None
        for sock in held:  # none was answered or closed: each one only counted
            sock.settimeout(0.0)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        return answers
    finally:
        for sock in held:
            sock.close()
