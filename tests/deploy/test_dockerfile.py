"""The Dockerfile: lint-clean, installs and starts the service the README's way, and builds
from a context that holds what it copies and nothing of the rest."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib

import pytest
from deploy_support import (
    DOCKERFILE,
    REPO,
    dockerfile_instructions,
    dockerignored,
    env_pairs,
    exec_form,
    final_stage,
    image_environment,
    readme_run,
    tool,
)

REQUIREMENTS_SCRIPT = REPO / "docker" / "requirements.py"
FLAVOURS = ("cpu", "gpu")


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]  # type: ignore[no-any-return]


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_start_command_is_the_readmes() -> None:
    instructions = dockerfile_instructions()
    runtime = final_stage(instructions)
    cmds = [i for i in instructions if i.keyword == "CMD"]
    assert [c.stage for c in cmds] == [runtime]
    assert not [i for i in instructions if i.stage == runtime and i.keyword == "ENTRYPOINT"]
    readme = readme_run()
    # The README starts .venv/bin/python; in the image the environment's bin is first on PATH.
    assert readme.start[0].endswith("/python")
    assert exec_form(cmds[0].value) == ["python", *readme.start[1:]] == ["python", "-m", "service"]


def test_install_step_is_the_readmes() -> None:
    """The image installs the project with the README's `pip install -e '.[FLAVOUR]'`."""
    readme = readme_run()
    assert readme.install[1:] == ["install", "-e", ".[cpu]"], readme.line
    installs = [
        i
        for i in dockerfile_instructions()
        if i.keyword == "RUN" and re.search(r"\bpip install\b[^&]*-e\b", i.value)
    ]
    assert len(installs) == 1, installs
    command = next(c for c in installs[0].value.split("&&") if "pip install" in c)
    assert shlex.split(command)[1:] == ["install", "--no-cache-dir", "-e", ".[${FLAVOUR}]"]


def test_flavours_are_the_projects_serving_extras() -> None:
    instructions = dockerfile_instructions()
    default = next(i for i in instructions if i.keyword == "ARG" and i.value.startswith("FLAVOUR="))
    assert default.value == "FLAVOUR=cpu"
    extras = _pyproject()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert extras["cpu"] == ["onnxruntime>=1.18"]
    assert [r.split(">")[0] for r in extras["gpu"]] == ["onnxruntime-gpu"]
    bases = {i.stage: i.value.split()[0] for i in instructions if i.keyword == "FROM"}
    assert bases["base-cpu"] == "${PYTHON_IMAGE}" and bases["base-gpu"] == "${CUDA_IMAGE}"
    args = dict(
        i.value.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.value
    )
    assert re.fullmatch(r"python:3\.1[1-9]-slim-\w+", args["PYTHON_IMAGE"])
    assert re.fullmatch(
        r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args["CUDA_IMAGE"]
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dependency_layer_is_pyprojects(flavour: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), str(REPO / "pyproject.toml"), flavour],
        capture_output=True,
        text=True,
        check=True,
    )
    project = _pyproject()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict) and isinstance(project["dependencies"], list)
    assert done.stdout.splitlines() == [*project["dependencies"], *extras[flavour]]
    assert not any("torch" in line for line in done.stdout.splitlines())


def test_requirements_script_names_the_allowed_flavours() -> None:
    done = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), str(REPO / "pyproject.toml"), "tpu"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "'cpu', 'gpu'" in done.stderr


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    instructions = dockerfile_instructions()
    order = [(i.keyword, i.value) for i in instructions]
    deps_install = next(
        n for n, (k, v) in enumerate(order) if k == "RUN" and "-r /tmp/requirements.txt" in v
    )
    copies = [n for n, (k, v) in enumerate(order) if k == "COPY" and "--from" not in v]
    code_copies = [n for n in copies if order[n][1].split()[0] in ("model/", "service/")]
    assert code_copies and min(code_copies) > deps_install
    before = [order[n][1].split()[0] for n in copies if n < deps_install]
    assert before == ["pyproject.toml", "docker/requirements.py"]


def test_runtime_stage_is_unprivileged_and_checks_readiness() -> None:
    instructions = dockerfile_instructions()
    runtime = final_stage(instructions)
    stage = [i for i in instructions if i.stage == runtime]
    users = [i.value for i in stage if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    healthcheck = next(i for i in stage if i.keyword == "HEALTHCHECK")
    assert healthcheck.value.split(" CMD ")[1] == '["python", "/app/docker/healthcheck.py"]'
    assert "/health/ready" in (REPO / "docker" / "healthcheck.py").read_text()
    # The runtime copies the environment and the code, and builds nothing.
    assert not [i for i in stage if i.keyword == "RUN" and "pip" in i.value]
    copies = [i.value for i in stage if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "--from=build /app /app"]


def test_image_configuration_is_only_dan_variables() -> None:
    from service.config import Settings

    known = {f"DAN_{name.upper()}" for name in Settings.model_fields}
    instructions = dockerfile_instructions()
    runtime = final_stage(instructions)
    env = {}
    for i in instructions:
        if i.stage == runtime and i.keyword == "ENV":
            env.update(env_pairs(i.value))
    dan = image_environment(instructions)
    assert dan == {"DAN_HOST": "0.0.0.0", "DAN_PORT": "8000"}
    assert set(dan) <= known
    assert int(dan["DAN_PORT"]) == Settings.model_fields["port"].default
    exposed = [i.value for i in instructions if i.stage == runtime and i.keyword == "EXPOSE"]
    assert exposed == [dan["DAN_PORT"]]


def test_no_torch_and_no_build_tools_in_the_image() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    runs = " ".join(i.value for i in dockerfile_instructions() if i.keyword == "RUN")
    for forbidden in ("torch", "gcc", "build-essential", "g++", "make ", "[train]", "[dev]"):
        assert forbidden not in runs, forbidden
    assert "pip uninstall --yes pip setuptools" in text


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "model/__init__.py",
        "model/dan-300w.onnx",
        "service/__main__.py",
        "service/app.py",
        "docker/requirements.py",
        "docker/healthcheck.py",
    ],
)
def test_build_context_holds_what_the_image_needs(path: str) -> None:
    assert not dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "runs/release-v1/last.pt",
        "tests/conftest.py",
        "training/train.py",
        "bench/load.py",
        ".git/HEAD",
        "service/__pycache__/app.cpython-311.pyc",
        "model/best.pt",
        "docker/k8s/deployment.yaml",
        "docker-compose.yml",
    ],
)
def test_build_context_leaves_out_the_rest(path: str) -> None:
    assert dockerignored(path)


def test_every_copied_path_is_in_the_build_context() -> None:
    for i in dockerfile_instructions():
        if i.keyword == "COPY" and "--from" not in i.value:
            source = i.value.split()[0]
            assert (REPO / source).exists(), source
            assert not dockerignored(source.rstrip("/")), source
