"""Helpers for the service tests: real ``python -m service`` processes, and reference landmarks.

The processes are ``bench.serving.ServiceProcess`` (the one helper of the benchmarks and
the tests) with the tests' settings.

The reference path is evaluation's own: cv2 decoding (``training.dataset``),
the one crop (``model.crop``), the model's own metadata (``model.metadata``)
and a plain onnxruntime session, so a test comparing it with the service
checks decode, batching and the mapping back together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.serving import ServiceProcess
from model.crop import crop_face, to_image
from model.metadata import ModelMetadata

# Every test server's settings unless a test says otherwise: one inference thread (the tests
# share two cores), the log at info (tests read it).
TEST_SETTINGS: dict[str, object] = {"cpu_threads": 1, "decode_threads": 2, "log_level": "info"}
# The main test server's limits (small, so the limit tests need small uploads only).
MAIN_SETTINGS: dict[str, object] = {
    "max_image_bytes": 1_000_000,
    "max_image_pixels": 4_000_000,
    "max_faces": 8,
    "max_batch_size": 8,
    "max_wait_ms": 2,
    "detector": "none",  # the paper's box-less procedure; detection has its own server
}


def launch(log_dir: Path, **settings: object) -> ServiceProcess:
    """Start ``python -m service`` with the test settings and these (not waiting for it)."""
    return ServiceProcess.launch({**TEST_SETTINGS, **settings}, log_dir)


@contextmanager
def serving(log_dir: Path, **settings: object) -> Iterator[ServiceProcess]:
    """A ready service for the ``with`` block; afterwards it must stop cleanly (exit code 0)."""
    with launch(log_dir, **settings).ready() as running:
        yield running


def run_to_exit(log_dir: Path, timeout: float = 60.0, **settings: object) -> tuple[int, str]:
    """Run ``python -m service`` that is expected to stop by itself: (exit code, log)."""
    service = launch(log_dir, **settings)
    return service.wait_exit(timeout), service.log()


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
