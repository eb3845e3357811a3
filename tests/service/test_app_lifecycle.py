"""Start-up and shutdown of ``python -m service``: refusals, readiness after warm-up, SIGTERM."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from service_support import launch, reference_landmarks, reference_session, run_to_exit

from training.dataset import Sample, read_gray


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

    from model.config import DANConfig
    from model.dan import DAN
    from training.export import export

    model = DAN(DANConfig(widths=(8, 8, 8, 8), num_stages=1), torch.from_numpy(mean_shape).float())
    with torch.no_grad():
        model.stages[0].fc2.bias.fill_(float("nan"))  # a broken export: loads, but answers NaN
    path = tmp_path / "nan.onnx"
    export(model.eval(), path, name="broken", version="0")
    code, log = run_to_exit(tmp_path, model_path=path)
    assert code == 1, log
    assert "warm-up failed, stopping the service: model returned non-finite landmarks" in log
    assert "ready:" not in log


def test_ready_only_after_warm_up_then_sigterm_finishes_the_requests_in_flight(
    tiny_model: Path, tmp_path: Path, test_faces: list[Sample]
) -> None:
    # Several full-batch warm-up runs (long enough to watch), and a long batching wait so that
    # requests are still queued when SIGTERM comes.
    service = launch(tmp_path, model_path=tiny_model, warmup_runs=6, max_wait_ms=600)
    sample = test_faces[0]
    data = sample.image_path.read_bytes()
    boxes = json.dumps([sample.detector_box.tolist()])
    try:
        # 1. Readiness: live first, ready only after warm-up, and never back.
        seen: list[tuple[int, int]] = []
        not_ready_align = None
        end = time.monotonic() + 90
        while time.monotonic() < end:
            assert service.process.poll() is None, service.log()
            try:
                live = service.client.get("/health/live", timeout=2).status_code
                ready = service.client.get("/health/ready", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.02)
                continue
            seen.append((live, ready))
            if ready == 503 and not_ready_align is None:
                not_ready_align = service.client.post(
                    "/align", files={"image": ("f.jpg", data)}, data={"boxes": boxes}
                )
            if ready == 200:
                break
            time.sleep(0.02)
        assert seen and seen[-1] == (200, 200), service.log()
        assert (200, 503) in seen, f"never saw live-but-not-ready: {seen}"
        assert all(live == 200 for live, _ in seen)
        assert not_ready_align is not None and not_ready_align.status_code == 503
        assert not_ready_align.json()["error"] == "not_ready"
        assert not_ready_align.headers["retry-after"] == "1"
        log = service.log()
        assert log.index("warm-up: batch sizes [8], 6 full-batch runs") < log.index("ready: tiny")

        # 2. SIGTERM while requests wait in the queue: they are answered, then the process exits.
        answers: list[httpx.Response] = []

        def ask() -> None:
            with httpx.Client(base_url=service.url, timeout=30) as client:
                answers.append(
                    client.post("/align", files={"image": ("f.jpg", data)}, data={"boxes": boxes})
                )

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # decoded and queued, waiting for the batch to fill (600 ms)
        assert service.process.poll() is None
        code = service.stop()
        for thread in threads:
            thread.join(30)
    finally:
        service.stop()
    log = service.log()
    assert code == 0, log
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    expected = reference_landmarks(
        reference_session(tiny_model), read_gray(sample.image_path), sample.detector_box
    )
    for answer in answers:
        got = np.asarray(answer.json()["faces"][0]["landmarks"])
        assert np.abs(got - expected).max() < 0.01
    assert "shutting down" in log and "stopped by SIGTERM" in log
    with pytest.raises(httpx.TransportError):
        httpx.get(service.url + "/health/live", timeout=2)
