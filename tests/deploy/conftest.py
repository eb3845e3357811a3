"""Deployment fixtures: the model to serve, and the service started exactly as the container.

``container_service`` runs the Dockerfile's own build steps for the CPU flavour (its COPY
through .dockerignore, its RUN lines: a fresh virtual environment, the dependency layer, the
README's `pip install -e '.[cpu]'`) in a scratch folder, then starts the image's ``CMD``
(`python -m service`, the README's start command) from its WORKDIR with the environment the
container gets: the image's ``ENV`` plus the compose file's CPU replica ``environment``. Only
what must differ on a test machine is changed: the address (loopback), the port (a free one),
CPU threads (one, as the tests share two cores) and, until the released model lands, the model
file (a tiny DAN exported here).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from deploy_support import (
    COMPOSE_FILE,
    DATA_ROOT,
    RELEASED_MODEL,
    ContainerService,
    compose_model,
    dockerfile_instructions,
    emulate_image_build,
    free_port,
    image_environment,
)

# Changed from the container's environment on a test machine (see the module docstring).
TEST_MACHINE_SETTINGS = {"DAN_HOST": "127.0.0.1", "DAN_CPU_THREADS": "1"}


def _data_mean_shape() -> np.ndarray | None:
    """The canonical mean shape of the first AFW faces, or None without the 300-W data."""
    if not (DATA_ROOT / "boxes.csv").is_file():
        return None
    from training.dataset import load_subset, read_box_csv
    from training.mean_shape import canonical_mean_shape

    samples = load_subset(DATA_ROOT, "afw", read_box_csv(DATA_ROOT / "boxes.csv"))[:50]
    return canonical_mean_shape(np.stack([s.landmarks for s in samples]))


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released model if it is there, else a tiny random DAN exported by training.export."""
    if RELEASED_MODEL.is_file():
        return RELEASED_MODEL
    import torch

    from model.config import DANConfig
    from model.dan import DAN
    from training.export import export

    torch.manual_seed(0)
    mean_shape = _data_mean_shape()
    model = DAN(
        DANConfig(widths=(8, 8, 8, 8), fc_units=32, num_stages=2),
        mean_shape=None if mean_shape is None else torch.from_numpy(mean_shape).float(),
        mean_image=torch.full((112, 112), 110.0),
        std_image=torch.full((112, 112), 60.0),
    ).eval()
    path = tmp_path_factory.mktemp("deploy-model") / "tiny.onnx"
    export(model, path, name="tiny-deploy", version="0.0.1")
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
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DAN_")}
    env.update({k: v for k, v in layout.env.items() if k != "FLAVOUR"})
    env.update(container_environment())
    env.update(TEST_MACHINE_SETTINGS)
    env["DAN_PORT"] = str(free_port())
    if served_model != RELEASED_MODEL:
        env["DAN_MODEL_PATH"] = str(served_model)
    log_path = folder / "service.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            layout.cmd, cwd=layout.app, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    with ContainerService(
        process, log_path, venv=layout.venv, env=env, layout=layout
    ).ready() as running:
        yield running
