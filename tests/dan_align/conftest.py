"""Fixtures of the client and command-line tests: a real service on a loopback port, photos.

The service is ``python -m service`` with the released model and its face detector (the
client is tested against what users run), started by the service tests' own helpers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import API_KEY, Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))  # service_support
from service_support import serving

REPO = Path(__file__).resolve().parents[2]
RELEASED_MODEL = REPO / "model" / "dan-300w.onnx"
# Small batches and one warm-up run: a quick start on a 2-core machine.
CLIENT_SERVICE_SETTINGS: dict[str, object] = {
    "model_path": RELEASED_MODEL,
    "max_batch_size": 4,
    "warmup_runs": 1,
    "max_faces": 8,
    "detector": "centerface",
}


@pytest.fixture(scope="session")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The same service with ``/align`` behind the key ``API_KEY`` (DAN_API_KEYS)."""
    settings = {**CLIENT_SERVICE_SETTINGS, "detector": "none", "api_keys": API_KEY}
    with serving(tmp_path_factory.mktemp("keyed-service"), **settings) as running:
        yield running


@pytest.fixture(scope="session")
def align_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``python -m service`` with the released model and CenterFace on a loopback port."""
    with serving(tmp_path_factory.mktemp("client-service"), **CLIENT_SERVICE_SETTINGS) as running:
        yield running


@pytest.fixture(scope="session")
def photos(data_root: Path) -> list[Path]:
    """Three real 300-W test photos (one face each)."""
    found = sorted((data_root / "lfpw" / "testset").glob("*.jpg"))[:2]
    found += sorted((data_root / "helen" / "testset").glob("*.jpg"))[:1]
    if len(found) < 3:
        pytest.skip(f"expected 300-W test photos under {data_root}")
    return found
