"""Helpers for the service tests: a real ``python -m service`` process, and reference landmarks.

The reference path is evaluation's own: cv2 decoding (``training.dataset``),
the one crop (``model.crop``), the model's own metadata (``model.metadata``)
and a plain onnxruntime session, so a test comparing it with the service
checks decode, batching and the mapping back together.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
from service_process import ServiceProcess

from model.crop import crop_face, to_image
from model.metadata import ModelMetadata

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
# The main test server's limits (small, so the limit tests need small uploads only).
MAIN_SETTINGS: dict[str, object] = {
    "max_image_bytes": 1_000_000,
    "max_image_pixels": 4_000_000,
    "max_faces": 8,
    "max_batch_size": 8,
    "max_wait_ms": 2,
    "detector": "none",  # the paper's box-less procedure; detection has its own server
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(**settings: object) -> dict[str, str]:
    """The environment of a test server: ours minus any DAN_*, small thread counts, overrides."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DAN_")}
    env.update(
        {
            "DAN_HOST": "127.0.0.1",
            "DAN_CPU_THREADS": "1",
            "DAN_DECODE_THREADS": "2",
            "DAN_LOG_LEVEL": "info",
        }
    )
    env.update({f"DAN_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@dataclass
class RunningService(ServiceProcess):
    """A ``python -m service`` child process on a loopback port."""

    port: int = field(kw_only=True)
    start_timeout_s: ClassVar[float] = START_TIMEOUT_S

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def launch(log_dir: Path, **settings: object) -> RunningService:
    """Start ``python -m service`` with ``DAN_*`` settings (not waiting for it)."""
    port = int(str(settings.pop("port", free_port())))
    log_path = log_dir / f"service-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env=service_env(port=port, **settings),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    return RunningService(process, log_path, port=port)


@contextmanager
def serving(log_dir: Path, **settings: object) -> Iterator[RunningService]:
    """A ready service for the ``with`` block; afterwards it must stop cleanly (exit code 0)."""
    with launch(log_dir, **settings).ready() as running:
        yield running


def run_to_exit(log_dir: Path, timeout: float = 60.0, **settings: object) -> tuple[int, str]:
    """Run ``python -m service`` that is expected to stop by itself: (exit code, log)."""
    service = launch(log_dir, **settings)
    try:
        code = service.process.wait(timeout)
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()
        service.client.close()
    return int(code), service.log()


def reference_session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def reference_landmarks(
    session: ort.InferenceSession, gray: np.ndarray, box: np.ndarray
) -> np.ndarray:
    """Landmarks (68, 2) in image pixels the way training crops: one face, one session.run."""
    meta = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    crop = crop_face(gray, box, meta.mean_shape, meta.input_size)
    (out,) = session.run(
        [meta.output_name], {meta.input_name: crop.pixels[None, None].astype(np.float32)}
    )
    return to_image(out[0].astype(np.float64), crop)
