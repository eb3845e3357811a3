"""The service built by the Dockerfile's steps and started as the container starts it serves.

A fresh virtual environment filled by the Dockerfile's RUN lines (the dependency layer, then
the README's ``pip install -e '.[cpu]'``), then the image's CMD ``python -m service`` (the
README's start command) with the image's and the compose file's DAN_* variables:
``/health/ready`` answers ready, ``/align`` answers 68 landmarks per face (near the annotated
ones when the released model is there), and the image's own HEALTHCHECK passes against it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from deploy_support import DATA_ROOT, RELEASED_MODEL, REPO, ContainerService, free_port, readme_run
from PIL import Image

from model.landmarks import NUM_LANDMARKS

pytestmark = pytest.mark.slow
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
# Mean landmark error over the inter-ocular distance that the released model must beat on a
# 300-W common-test face given its detector box; the paper reports about 0.04 on the set.
RELEASED_MAX_ERROR = 0.10


def _face() -> tuple[bytes, list[float], np.ndarray | None]:
    """An encoded image, a face box in it and the annotated landmarks (None when synthetic)."""
    if (DATA_ROOT / "boxes.csv").is_file():
        from training.dataset import load_subset, read_box_csv

        samples = load_subset(DATA_ROOT, "lfpw_test", read_box_csv(DATA_ROOT / "boxes.csv"))
        sample, box = next((s, s.detector_box) for s in samples if s.detector_box is not None)
        return sample.image_path.read_bytes(), [float(v) for v in box], sample.landmarks
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), [100.0, 60.0, 220.0, 180.0], None


def test_started_with_the_images_command_and_environment(
    container_service: ContainerService,
) -> None:
    layout = container_service.layout
    readme = readme_run()
    assert layout.cmd == ["python", *readme.start[1:]] == ["python", "-m", "service"]
    assert container_service.process.args == layout.cmd
    assert container_service.env["DAN_PROVIDER"] == "cpu"
    # The environment holds the service and onnxruntime, and neither torch nor pip.
    site = next(container_service.venv.glob("lib/python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"onnxruntime", "fastapi", "dan_align"} <= installed
    assert not installed & {"torch", "pip", "setuptools", "onnx"}, installed


def test_ready(container_service: ContainerService) -> None:
    answer = container_service.client.get("/health/ready")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert body["provider"] == "cpu"
    assert body["model"]["name"]
    assert container_service.client.get("/health/live").json() == {"status": "alive"}


def test_align_multipart(container_service: ContainerService) -> None:
    image, box, truth = _face()
    answer = container_service.client.post(
        "/align", files={"image": ("face.jpg", image)}, data={"boxes": json.dumps([box])}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert face["box_source"] == "request"
    points = np.asarray(face["landmarks"], dtype=np.float64)
    assert points.shape == (NUM_LANDMARKS, 2)
    assert np.isfinite(points).all()
    if truth is not None and container_service.env.get("DAN_MODEL_PATH") is None:
        from model.landmarks import inter_ocular_distance

        error = np.linalg.norm(points - truth, axis=1).mean() / inter_ocular_distance(truth)
        assert error < RELEASED_MAX_ERROR, f"released model: error {error:.3f} on a test face"


def test_align_json(container_service: ContainerService) -> None:
    image, box, _ = _face()
    answer = container_service.client.post(
        "/align", json={"image": base64.b64encode(image).decode(), "boxes": [box]}
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["faces"][0]["landmarks"]) == NUM_LANDMARKS


def test_align_refuses_what_is_not_an_image(container_service: ContainerService) -> None:
    answer = container_service.client.post("/align", files={"image": ("x.jpg", b"not an image")})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]


def test_image_health_check_passes_against_the_service(
    container_service: ContainerService,
) -> None:
    """The HEALTHCHECK's own command, in the container's environment."""
    done = subprocess.run(
        container_service.layout.healthcheck,
        env=container_service.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_image_health_check_fails_without_a_service() -> None:
    env = {**os.environ, "DAN_HOST": "127.0.0.1", "DAN_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "unreachable" in done.stderr


def test_released_model_is_what_the_image_serves_by_default() -> None:
    """The image sets no DAN_MODEL_PATH: it serves the model bundled at model/dan-300w.onnx."""
    from deploy_support import dockerfile_instructions, image_environment

    assert "DAN_MODEL_PATH" not in image_environment(dockerfile_instructions())
    from service.config import DEFAULT_MODEL_PATH

    assert DEFAULT_MODEL_PATH == RELEASED_MODEL
