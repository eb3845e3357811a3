"""The service built by the Dockerfile's steps and started as the container starts it serves.

A fresh virtual environment filled by the Dockerfile's RUN lines (the dependency layer, then
the README's ``pip install -e '.[cpu]'``), then the image's CMD ``python -m service`` (the
README's start command) with the image's and the compose file's DAN_* variables:
``/health/ready`` answers ready, ``/align`` answers 68 landmarks per face (on a real or a
synthetic test face; near the annotated ones of a real face when the image serves the released
model), and the image's own HEALTHCHECK passes against it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from deploy_support import RELEASED_MODEL, REPO, ContainerService, readme_run

from bench.serving import free_port
from model.landmarks import NUM_LANDMARKS, inter_ocular_distance
from training.dataset import Sample

pytestmark = [pytest.mark.slow, pytest.mark.process]
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
# Mean landmark error over the inter-ocular distance that the released model must beat on a
# 300-W common-test face given its detector box; the paper reports about 0.04 on the set.
RELEASED_MAX_ERROR = 0.10


def align_multipart(container_service: ContainerService, sample: Sample) -> np.ndarray:
    """The landmarks (68, 2) the service answers for the sample's image and detector box."""
    answer = container_service.service.client.post(
        "/align",
        files={"image": ("face.jpg", sample.image_path.read_bytes())},
        data={"boxes": json.dumps([sample.box("file").tolist()])},
    )
    assert answer.status_code == 200, answer.text
    (face,) = answer.json()["faces"]
    assert face["box_source"] == "request"
    return np.asarray(face["landmarks"], dtype=np.float64)


def test_started_with_the_images_command_and_environment(
    container_service: ContainerService,
) -> None:
    layout = container_service.layout
    service = container_service.service
    readme = readme_run()
    assert layout.cmd == ["python", *readme.start[1:]] == ["python", "-m", "service"]
    assert service.process.args == layout.cmd
    assert service.env["DAN_PROVIDER"] == "cpu"
    # The environment holds the service and onnxruntime, and neither torch nor pip.
    site = next(layout.venv.glob("lib/python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"onnxruntime", "fastapi", "dan_align"} <= installed
    assert not installed & {"torch", "pip", "setuptools", "onnx"}, installed


def test_ready(container_service: ContainerService) -> None:
    client = container_service.service.client
    answer = client.get("/health/ready")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert body["provider"] == "cpu"
    assert body["model"]["name"]
    assert client.get("/health/live").json() == {"status": "alive"}


def test_align_multipart(container_service: ContainerService, test_faces: list[Sample]) -> None:
    points = align_multipart(container_service, test_faces[0])
    assert points.shape == (NUM_LANDMARKS, 2)
    assert np.isfinite(points).all()


def test_the_released_model_finds_a_real_face(
    container_service: ContainerService, real_test_faces: list[Sample]
) -> None:
    if "DAN_MODEL_PATH" in container_service.service.env:
        pytest.skip("the image serves a tiny stand-in model: model/dan-300w.onnx is not there")
    sample = real_test_faces[0]
    points = align_multipart(container_service, sample)
    error = np.linalg.norm(points - sample.landmarks, axis=1).mean()
    error /= inter_ocular_distance(sample.landmarks)
    assert error < RELEASED_MAX_ERROR, f"released model: error {error:.3f} on a test face"


def test_align_json(container_service: ContainerService, test_faces: list[Sample]) -> None:
    sample = test_faces[0]
    image = base64.b64encode(sample.image_path.read_bytes()).decode()
    answer = container_service.service.client.post(
        "/align", json={"image": image, "boxes": [sample.box("file").tolist()]}
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["faces"][0]["landmarks"]) == NUM_LANDMARKS


def test_align_refuses_what_is_not_an_image(container_service: ContainerService) -> None:
    client = container_service.service.client
    answer = client.post("/align", files={"image": ("x.jpg", b"not an image")})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]


def test_image_health_check_passes_against_the_service(
    container_service: ContainerService,
) -> None:
    """The HEALTHCHECK's own command, in the container's environment."""
    done = subprocess.run(
        container_service.layout.healthcheck,
        env=container_service.service.env,
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
