"""A client that goes away is not a server error (issue 13, class 3), on a real server.

``python -m service`` on a loopback port; raw sockets send part of a body and close, or
close while their face waits in the queue. The answer is counted as 499 ``client_closed``,
logged once at INFO, without a traceback, and the work for that client stops: its face is
withdrawn from the queue, never run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from encoded_images import noise_png
from raw_http import (
    MULTIPART_TYPE,
    connect,
    metric,
    multipart,
    request_head,
    until,
    until_metric,
)
from service_support import ServiceProcess, serving

pytestmark = pytest.mark.process
BOX = [40.0, 40.0, 120.0, 120.0]


def face_png() -> bytes:
    return noise_png(3)


@pytest.fixture(scope="module")
def patient(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A server whose lone face waits a whole second for its batch to fill."""
    with serving(
        tmp_path_factory.mktemp("disconnects"),
        model_path=tiny_model,
        detector="none",
        max_batch_size=8,
        max_wait_ms=1000,
    ) as running:
        yield running


def client_closed_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "client_closed" in line]


def test_a_client_gone_mid_upload_is_499_client_closed_logged_once_at_info(
    patient: ServiceProcess,
) -> None:
    before = metric(patient.client, "dan_errors_total", reason="client_closed")
    lines_before = len(client_closed_lines(patient.log()))
    body = multipart(face_png(), json.dumps([BOX]))
    with connect(patient.port) as sock:
        sock.sendall(request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, len(body)))
        sock.sendall(body[: len(body) // 2])
    until_metric(patient.client, "dan_errors_total", before + 1, reason="client_closed")
    assert metric(patient.client, "dan_requests_total", route="/align", status="499") >= 1
    assert metric(patient.client, "dan_errors_total", reason="internal_error") == 0
    assert metric(patient.client, "dan_requests_total", route="/align", status="500") == 0
    log = patient.log()
    lines = client_closed_lines(log)[lines_before:]
    assert len(lines) == 1, lines
    assert " INFO " in lines[0] and "after" in lines[0], lines[0]
    assert "Traceback" not in log and " ERROR " not in log, log


def test_a_client_gone_while_its_face_waits_stops_the_work(patient: ServiceProcess) -> None:
    client = patient.client
    batches = metric(client, "dan_batch_size_count")
    faces = metric(client, "dan_faces_aligned_total")
    closed = metric(client, "dan_errors_total", reason="client_closed")
    body = multipart(face_png(), json.dumps([BOX]))
    with connect(patient.port) as sock:
        sock.sendall(request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, len(body)))
        sock.sendall(body)
        until_metric(client, "dan_queue_depth", 1)  # decoded, queued, waiting for its batch
        sock.setblocking(False)
        try:
            early = sock.recv(1024)
        except BlockingIOError:
            early = b""
        assert early == b"", "answered before the test could close (the batch wait is 1 s)"
    until_metric(client, "dan_errors_total", closed + 1, reason="client_closed")
    until_metric(client, "dan_queue_depth", 0)  # the worker took the queue: the face skipped
    until(lambda: metric(client, "dan_requests_in_flight") == 1, "no request in flight")
    assert metric(client, "dan_batch_size_count") == batches, "the withdrawn face was run"
    assert metric(client, "dan_faces_aligned_total") == faces
    assert metric(client, "dan_errors_total", reason="internal_error") == 0
    log = patient.log()
    assert "Traceback" not in log and " ERROR " not in log, log
