"""Deployment fixtures: the model to serve, and the service started exactly as the container.

``container_service`` runs the Dockerfile's own build steps for the CPU flavour (its COPY
through .dockerignore, its RUN lines: a fresh virtual environment, the dependency layer, the
README's `pip install -e '.[cpu]'`) in a scratch folder, then starts the image's ``CMD``
(`python -m service`, the README's start command) from its WORKDIR with the environment the
container gets: the image's ``ENV`` plus the compose file's CPU replica ``environment``. Only
what must differ on a test machine is changed: the address (loopback), the port (a free one),
CPU threads (one, as the tests share two cores), the API key files of the compose secrets (a
test key in the scratch folder, sent by the test client) and, until the released model lands,
the model file (a tiny DAN exported here). The process is ``bench.serving.ServiceProcess``, the one helper
of the benchmarks and the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from deploy_support import (
    COMPOSE_FILE,
    RELEASED_MODEL,
    ContainerService,
    compose_model,
    dockerfile_instructions,
    emulate_image_build,
    image_environment,
)

from bench.serving import ServiceProcess, free_port, service_env

# Changed from the container's environment on a test machine (see the module docstring).
TEST_MACHINE_SETTINGS = {"DAN_HOST": "127.0.0.1", "DAN_CPU_THREADS": "1"}
COMPOSE_SECRETS = "/run/secrets/"
TEST_API_KEY = "test-only-api-key-0123456789abcdef"


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory, mean_shape: np.ndarray) -> Path:
    """The released model if it is there, else a tiny random DAN exported by training.export."""
    if RELEASED_MODEL.is_file():
        return RELEASED_MODEL
    from tiny_dan import tiny_dan

    from training.export import export

    path = tmp_path_factory.mktemp("deploy-model") / "tiny.onnx"
    export(tiny_dan(mean_shape, fc_units=32), path, name="tiny-deploy", version="0.0.1")
    return path


def container_environment() -> dict[str, str]:
    """The DAN_* environment of a CPU replica: the image's ENV, then the compose file's."""
    env = image_environment(dockerfile_instructions())
    service = compose_model(COMPOSE_FILE)["services"]["align-cpu"]
    env.update({k: str(v) for k, v in service["environment"].items()})
    return env


@pytest.fixture(scope="session")
def container_service(
    served_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContainerService]:
    """The image's CPU flavour built by its own Dockerfile steps into a fresh virtual
    environment, started with its CMD and the container's environment, ready (fails with the
    log if it does not get there)."""
    folder = tmp_path_factory.mktemp("container")
    layout = emulate_image_build("cpu", folder, folder / "build.log")
    env = service_env({})  # this machine's environment without DAN_*
    env.update({k: v for k, v in layout.env.items() if k != "FLAVOUR"})
    env.update(container_environment())
    env.update(TEST_MACHINE_SETTINGS)
    env["DAN_PORT"] = str(free_port())
    if served_model != RELEASED_MODEL:
        env["DAN_MODEL_PATH"] = str(served_model)
    # The compose secrets (the API key files under /run/secrets): here in the scratch folder,
    # one test key in each, which the test client sends.
    secrets = folder / "run-secrets"
    secrets.mkdir()
    for name, value in list(env.items()):
        if value.startswith(COMPOSE_SECRETS):
            env[name] = str(secrets / Path(value).name)
            Path(env[name]).write_text(f"{TEST_API_KEY}\n", encoding="utf-8")
    service = ServiceProcess.start(layout.cmd, env, folder / "service.log", cwd=layout.app)
    service.client.headers["Authorization"] = f"Bearer {TEST_API_KEY}"
    with service.ready():
        yield ContainerService(service, layout)
