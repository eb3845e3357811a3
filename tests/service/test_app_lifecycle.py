"""Start-up and shutdown of ``python -m service``: refusals, readiness after warm-up, SIGTERM.

Real processes, for what only a process shows: exit codes, the log, signals. Each waits for
what it can observe (``/metrics``, a log line, the process's exit), never for a guessed time.
"""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from raw_http import (
    MULTIPART_TYPE,
    WAIT_S,
    connect,
    multipart,
    read_response,
    request_head,
    until,
    until_metric,
)
from service_support import launch, reference_landmarks, reference_session, run_to_exit

from training.dataset import Sample, read_gray

pytestmark = pytest.mark.process


def test_invalid_settings_stop_start_up_naming_the_variable(
    tiny_model: Path, tmp_path: Path
) -> None:
    code, log = run_to_exit(tmp_path, model_path=tiny_model, max_batch_size=0, max_wait_ms="soon")
    assert code == 2, log
    assert "invalid settings, not starting" in log
    assert "DAN_MAX_BATCH_SIZE: Input should be greater than or equal to 1 (got '0')" in log
    assert "DAN_MAX_WAIT_MS" in log


def test_a_missing_model_stops_start_up(tmp_path: Path) -> None:
    code, log = run_to_exit(tmp_path, model_path=tmp_path / "nowhere.onnx")
    assert code == 2, log
    assert "nowhere.onnx does not exist" in log


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dan.format_version": None}, "lacks the metadata dan.format_version"),
        (
            {"dan.format_version": "7"},
            "dan.format_version '7'; dan-align reads format version(s) 1",
        ),
    ],
)
def test_a_model_without_its_metadata_stops_start_up(
    tiny_model: Path, tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    proto = onnx.load(str(tiny_model))
    kept = {p.key: p.value for p in proto.metadata_props}
    for key, value in change.items():
        if value is None:
            del kept[key]
        else:
            kept[key] = value
    del proto.metadata_props[:]
    for key, value in kept.items():
        proto.metadata_props.add(key=key, value=value)
    path = tmp_path / "changed.onnx"
    onnx.save(proto, str(path))
    code, log = run_to_exit(tmp_path, model_path=path)
    assert code == 3, log
    assert message in log
    assert "cannot start" in log


def test_a_model_failing_in_warm_up_stops_the_service(
    tmp_path: Path, mean_shape: np.ndarray
) -> None:
    import torch
    from tiny_dan import tiny_dan

    from training.export import export

    model = tiny_dan(mean_shape, num_stages=1)
    with torch.no_grad():
        model.stages[0].fc2.bias.fill_(float("nan"))  # a broken export: loads, but answers NaN
    path = tmp_path / "nan.onnx"
    export(model, path, name="broken", version="0")
    code, log = run_to_exit(tmp_path, model_path=path)
    assert code == 1, log
    assert "warm-up failed, stopping the service: model returned non-finite landmarks" in log
    assert "ready:" not in log


def test_ready_only_after_warm_up_then_sigterm_finishes_the_requests_in_flight(
    tiny_model: Path, tmp_path: Path, test_faces: list[Sample]
) -> None:
    # 1. Ready only once the warm-up is done (its log line comes first), and live. That
    # /health/ready and /align answer 503 not_ready during the warm-up is tested in-process,
    # where the warm-up is held at a gate (test_app_failures): here it may be over in a blink.
    service = launch(tmp_path, model_path=tiny_model, warmup_runs=6, request_deadline_ms=120_000)
    sample = test_faces[0]
    body = multipart(sample.image_path.read_bytes(), json.dumps([sample.box("file").tolist()]))
    head = request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, len(body))
    with contextlib.ExitStack() as stack:
        stack.callback(service.stop)
        service.wait_ready()
        assert service.client.get("/health/live").status_code == 200
        log = service.log()
        assert log.index("warm-up: batch sizes [8], 6 full-batch runs") < log.index("ready: tiny")

        # 2. SIGTERM while three requests are in flight (their uploads not finished): the server
        # shuts down but waits for them; once their bodies are in they are answered in full,
        # then the queue is drained and the process exits with 0.
        sockets = [stack.enter_context(connect(service.port)) for _ in range(3)]
        for sock in sockets:
            sock.sendall(head + body[:-10])
        until_metric(service.client, "dan_requests_in_flight", 4)  # the three and this scrape
        service.process.send_signal(signal.SIGTERM)
        until(lambda: "Shutting down" in service.log(), "uvicorn shutting down")
        for sock in sockets:
            sock.sendall(body[-10:])
        answers = [read_response(sock) for sock in sockets]
        code = service.process.wait(WAIT_S)
    log = service.log()
    assert code == 0, log
    expected = reference_landmarks(
        reference_session(tiny_model), read_gray(sample.image_path), sample.box("file")
    )
    for answer in answers:
        status, _, content = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200 "), answer[:2000]
        got = np.asarray(json.loads(content)["faces"][0]["landmarks"])
        assert np.abs(got - expected).max() < 0.01
    shutdown = ["Shutting down", "service.app: shutting down: draining", "service.app: stopped"]
    assert [log.index(line) for line in shutdown] == sorted(log.index(line) for line in shutdown)
    assert "stopped by SIGTERM" in log
    with pytest.raises(httpx.TransportError):
        httpx.get(service.url + "/health/live", timeout=2)
