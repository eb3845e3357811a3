"""Logs an attacker cannot flood (issue 13, class 4), on a real server.

``python -m service`` on a loopback port takes one request at a time
(DAN_MAX_PENDING_REQUESTS=1) and lets a lone face wait a second for its batch: while one
request waits, every other is refused with 503 ``overloaded``. The refusals are counted in
``dan_errors_total`` and leave no line in the log at the default level; a flood of invalid HTTP
gets a few lines of the server's warning, not one per request.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from encoded_images import noise_png
from raw_http import (
    MULTIPART_TYPE,
    connect,
    metric,
    multipart,
    read_response,
    request_head,
    until_metric,
)
from service_support import serving

from service.log_limit import DEFAULT_BURST

pytestmark = pytest.mark.process
BOX = [40.0, 40.0, 120.0, 120.0]


def face_png() -> bytes:
    return noise_png(4)


def test_refusals_are_counted_not_logged_and_invalid_http_is_rate_limited(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with serving(
        tmp_path_factory.mktemp("log-flood"),
        model_path=tiny_model,
        detector="none",
        max_pending_requests=1,
        max_wait_ms=1000,
        log_level="info",
    ) as service:
        image = face_png()
        body = multipart(image, json.dumps([BOX]))
        refused = 0
        with connect(service.port) as sock:
            sock.sendall(
                request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, len(body))
            )
            sock.sendall(body)
            until_metric(service.client, "dan_queue_depth", 1)  # the one request in progress
            with httpx.Client(base_url=service.url, timeout=30) as other:
                while metric(service.client, "dan_queue_depth") == 1 and refused < 200:
                    answer = other.post(
                        "/align",
                        files={"image": ("f.png", image)},
                        data={"boxes": json.dumps([BOX])},
                    )
                    if metric(service.client, "dan_queue_depth") != 1:
                        break  # the batch ran meanwhile: this one may have been taken
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["error"] == "overloaded"
                    refused += 1
            sock.shutdown(2)
        assert refused >= 3, "the first request's batch ran before the test could ask"
        assert metric(service.client, "dan_errors_total", reason="overloaded") >= refused
        for _ in range(5 * DEFAULT_BURST):
            with connect(service.port) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                assert read_response(sock).startswith(b"HTTP/1.1 400")
        log = service.log()
    assert "overloaded" not in log, log  # the refusals: counted, not logged
    invalid = [line for line in log.splitlines() if "Invalid HTTP request received" in line]
    assert 1 <= len(invalid) <= DEFAULT_BURST + 1, invalid
