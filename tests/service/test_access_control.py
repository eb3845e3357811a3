"""Access control (issue 13, class 6), on a real server.

``python -m service`` on a loopback port with API keys for ``/align`` (from a file, as a
secret is mounted) and others for ``/metrics``, and the documentation turned off. Health stays
open; a request without a valid key is 401 ``unauthorized`` with ``WWW-Authenticate``, before
its body is read (the connection is then closed); no key reaches the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from encoded_images import noise_png
from raw_http import (
    MULTIPART_TYPE,
    closed_by_server,
    connect,
    read_answer,
    request_head,
)
from service_support import run_to_exit, serving

pytestmark = pytest.mark.process
BOX = [40.0, 40.0, 120.0, 120.0]
ALIGN_KEYS = ("align-key-one-0123456789abcdef", "align-key-two-fedcba9876543210")
METRICS_KEY = "metrics-key-00112233445566778899"


def face_png() -> bytes:
    return noise_png(7)


@pytest.fixture(scope="module")
def locked(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("access")
    keys = folder / "align-api-keys"
    keys.write_text(f"# the /align keys\n{ALIGN_KEYS[0]}\n\n{ALIGN_KEYS[1]}  # the second\n")
    with serving(
        folder,
        model_path=tiny_model,
        detector="none",
        api_keys_file=keys,
        metrics_api_keys=METRICS_KEY,
        docs="false",
    ) as running:
        yield running


def align(service: Any, headers: dict[str, str] | None = None, path: str = "/align") -> Any:
    return service.client.post(
        path,
        files={"image": ("f.png", face_png())},
        data={"boxes": json.dumps([BOX])},
        headers=headers or {},
    )


def assert_unauthorized(answer: Any) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized"
    assert answer.headers["www-authenticate"] == 'Bearer realm="dan-align"'


def test_align_needs_one_of_its_keys_by_bearer_or_x_api_key(locked: Any) -> None:
    assert_unauthorized(align(locked))
    assert_unauthorized(align(locked, {"Authorization": "Bearer not-a-key-0123456789abcdef"}))
    assert_unauthorized(align(locked, {"X-API-Key": METRICS_KEY}))  # the other route's key
    assert_unauthorized(align(locked, {"Authorization": f"Basic {ALIGN_KEYS[0]}"}))
    assert align(locked, {"Authorization": f"Bearer {ALIGN_KEYS[0]}"}).status_code == 200
    assert align(locked, {"X-API-Key": ALIGN_KEYS[1]}).status_code == 200
    assert_unauthorized(align(locked, path="/align/stream"))  # every /align/... route
    assert align(locked, {"X-API-Key": ALIGN_KEYS[1]}, "/align/stream").status_code == 404


def test_metrics_need_their_own_key_and_health_stays_open(locked: Any) -> None:
    assert_unauthorized(locked.client.get("/metrics"))
    assert_unauthorized(locked.client.get("/metrics", headers={"X-API-Key": ALIGN_KEYS[0]}))
    answer = locked.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
    assert answer.status_code == 200
    assert 'dan_errors_total{reason="unauthorized"}' in answer.text
    assert locked.client.get("/health/live").status_code == 200
    assert locked.client.get("/health/ready").status_code == 200


def test_docs_can_be_turned_off(locked: Any) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        answer = locked.client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "not_found"


def test_a_refused_upload_is_not_read_and_its_connection_closed(locked: Any) -> None:
    with connect(locked.port) as sock:
        sock.sendall(request_head("POST", "/align", {"Content-Type": MULTIPART_TYPE}, 1_000_000))
        sock.sendall(b"--dan-boundary\r\n")  # and nothing more
        status, headers, payload = read_answer(sock)
        assert status == 401, payload
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_no_key_is_ever_logged(locked: Any) -> None:
    align(locked, {"Authorization": "Bearer wrong-key-but-secret-too-123456"})
    log = locked.log()
    for key in (*ALIGN_KEYS, METRICS_KEY, "wrong-key-but-secret-too-123456"):
        assert key not in log


def test_a_bad_key_stops_start_up_without_showing_it(tiny_model: Path, tmp_path: Path) -> None:
    code, log = run_to_exit(tmp_path, model_path=tiny_model, api_keys="short-secret")
    assert code == 2, log
    assert "DAN_API_KEYS: key 1 must be at least 16 visible ASCII characters" in log
    assert "short-secret" not in log
    empty = tmp_path / "no-keys"
    empty.write_text("# none yet\n")
    code, log = run_to_exit(tmp_path, model_path=tiny_model, metrics_api_keys_file=empty)
    assert code == 2, log
    assert "holds no key" in log
