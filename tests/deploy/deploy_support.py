"""Helpers for the deployment tests: reading the Dockerfile, the compose file and the README,
and building and running the image's CPU flavour without Docker.

Everything here reads the repository's own files, so that the tests compare the image, the
compose file, the Kubernetes manifests and the README with one another and with the service.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.serving import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_CPU_FILE = REPO / "docker" / "compose.cpu.yml"
NGINX_CONF = REPO / "docker" / "nginx" / "nginx.conf"
PROMETHEUS_CONFIG = REPO / "docker" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = REPO / "docker" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "dan-align.json"
K8S_DIR = REPO / "docker" / "k8s"
DEPLOY_README = REPO / "docker" / "README.md"
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"
# Compose variables without a default (the file refuses to load without them).
REQUIRED_COMPOSE_VARIABLES = {
    "GRAFANA_ADMIN_PASSWORD": "test-only-password",
    "ALIGN_API_KEYS_FILE": "/test-only/align-api-keys",
    "METRICS_API_KEY_FILE": "/test-only/metrics-api-key",
}
RELEASED_MODEL = REPO / "model" / "dan-300w.onnx"


def tool(name: str) -> str:
    """The path of a command-line tool on PATH or in .venv/bin; skip the test without it."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/test.sh installs it)")
    return found


@dataclass(frozen=True)
class ContainerService:
    """The image's CMD started as the container starts it (``service``: its process, log,
    environment and client), and the emulated image it runs from (``layout``)."""

    service: ServiceProcess
    layout: ImageLayout


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


# ---- Dockerfile ----


@dataclass(frozen=True)
class Instruction:
    stage: str  # the name of the stage it belongs to ("" before the first FROM)
    keyword: str  # upper case: FROM, RUN, ENV, ...
    value: str  # the rest, continuation lines joined


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions of a Dockerfile, comments dropped and continuation lines joined."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    stage = ""
    out = []
    for text in logical:
        keyword, _, value = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)\s*$", value, re.IGNORECASE)
            stage = match.group(1) if match else value.split()[0]
        out.append(Instruction(stage, keyword, " ".join(value.split())))
    return out


def exec_form(value: str) -> list[str]:
    """A JSON-array (exec form) argument, e.g. of CMD."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(v, str) for v in parsed), value
    return parsed


def env_pairs(value: str) -> dict[str, str]:
    """The KEY=VALUE pairs of one ENV instruction."""
    pairs = {}
    for token in shlex.split(value):
        key, sep, val = token.partition("=")
        assert sep, f"ENV {value!r}: expected KEY=VALUE pairs"
        pairs[key] = val
    return pairs


def final_stage(instructions: list[Instruction]) -> str:
    return [i for i in instructions if i.keyword == "FROM"][-1].stage


def image_environment(instructions: list[Instruction]) -> dict[str, str]:
    """The DAN_* variables the runtime stage of the image sets."""
    runtime = final_stage(instructions)
    env: dict[str, str] = {}
    for i in instructions:
        if i.stage == runtime and i.keyword == "ENV":
            env.update({k: v for k, v in env_pairs(i.value).items() if k.startswith("DAN_")})
    return env


# ---- the README's commands ----


@dataclass(frozen=True)
class ReadmeRun:
    """The README's install-and-start line, split into its three steps."""

    line: str
    create_venv: list[str]  # python3 -m venv .venv
    install: list[str]  # .venv/bin/pip install -e '.[cpu]'
    start: list[str]  # .venv/bin/python -m service


def readme_run(path: Path = README) -> ReadmeRun:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    found = [line for line in lines if "-m service" in line and not line.startswith("#")]
    assert len(found) == 1, f"expected one command line starting the service in {path}: {found}"
    steps = [shlex.split(step) for step in found[0].split("&&")]
    assert len(steps) == 3, f"expected venv && install && start in {found[0]!r}"
    return ReadmeRun(found[0], *steps)


# ---- compose ----


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def compose_variables(text: str) -> dict[str, str | None]:
    """Every ${NAME...} in a compose file: NAME -> its default (None: none, or required)."""
    found: dict[str, str | None] = {}
    for m in _INTERPOLATION.finditer(text):
        default = m.group("arg") if m.group("op") in (":-", "-") else None
        found.setdefault(m.group("name"), default)
    return found


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${NAME:-default} interpolation, with ``values`` as the environment."""

    def replace(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if name in values:
            return values[name]
        if op in (":-", "-"):
            return str(arg)
        raise KeyError(f"compose variable {name} has no value and no default")

    return _INTERPOLATION.sub(replace, text)


def compose_model(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose files loaded with defaults interpolated, later files merged over earlier
    ones the way Compose merges mappings (enough for the keys these files override)."""
    values = {**REQUIRED_COMPOSE_VARIABLES, **(env or {})}
    merged: dict[str, Any] = {}
    for path in files:
        merged = _merge(merged, yaml.safe_load(interpolate(path.read_text("utf-8"), values)))
    return merged


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return override


# ---- .dockerignore ----


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignored(path: str, ignore_file: Path = DOCKERIGNORE) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context: the last
    pattern matching it or one of its parent folders decides, ``!`` patterns re-include."""
    rules = []
    for raw in ignore_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        rules.append((negated, _pattern_regex(pattern.strip("/"))))
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            ignored = not negated
    return ignored


# ---- the image, built without Docker ----


@dataclass(frozen=True)
class ImageLayout:
    """Where an emulated image build put the image's /app and /opt/venv, and how it runs."""

    app: Path  # the image's /app (its WORKDIR)
    venv: Path  # the image's /opt/venv
    env: dict[str, str]  # the runtime stage's ENV, paths mapped (DAN_* among them)
    cmd: list[str]  # the CMD, paths mapped
    healthcheck: list[str]  # the HEALTHCHECK's command, paths mapped

    def map(self, text: str) -> str:
        return text.replace("/opt/venv", str(self.venv)).replace("/app", str(self.app))


def _copy_into_context(source: str, destination: Path) -> None:
    """COPY from the build context: ``source`` (file or folder) to ``destination``."""
    path = REPO / source
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(REPO).as_posix()
        if dockerignored(relative):
            continue
        target = (
            destination / file.relative_to(path)
            if path.is_dir()
            else (
                destination / file.name
                if source.endswith("/") or destination.is_dir()
                else destination
            )
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)


def emulate_image_build(flavour: str, root: Path, log: Path, timeout: float = 900.0) -> ImageLayout:
    """Run the Dockerfile's stages for ``flavour`` on this machine, with /app and /opt/venv
    under ``root``: its ENV, WORKDIR, COPY (through .dockerignore) and RUN instructions in
    order, then read the runtime stage's ENV, HEALTHCHECK and CMD. The base image is this
    machine (its python3); the runtime stage's user creation is skipped (it needs root and
    changes the machine) and pip may use its cache; everything else runs as written."""
    instructions = dockerfile_instructions()
    runtime = final_stage(instructions)
    layout = ImageLayout(root / "app", root / "venv", {}, [], [])
    mapped = {"/tmp/requirements.txt": str(root / "requirements.txt")}
    stages = {"base", "deps", "build", f"base-{flavour}"}
    env: dict[str, str] = {"FLAVOUR": flavour}
    workdir = layout.app
    healthcheck: list[str] = []
    cmd: list[str] = []

    def path_map(text: str) -> str:
        for old, new in mapped.items():
            text = text.replace(old, new)
        return layout.map(text)

    for i in instructions:
        if i.stage not in stages and i.stage != runtime:
            continue
        if i.keyword == "ENV":
            for key, value in env_pairs(i.value).items():
                value = value.replace("$PATH", env.get("PATH", os.environ["PATH"]))
                env[key] = path_map(value)
        elif i.keyword == "WORKDIR":
            workdir = Path(path_map(i.value))
            workdir.mkdir(parents=True, exist_ok=True)
        elif i.keyword == "COPY" and i.stage != runtime:
            source, destination = i.value.split()
            target = (
                workdir / destination
                if not destination.startswith("/")
                else Path(path_map(destination))
            )
            if destination.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
            _copy_into_context(source, target)
        elif i.keyword == "RUN" and i.stage != runtime:
            # pip's cache is kept (the image build has none to keep): the same packages, but
            # not downloaded again on every test run.
            command = path_map(i.value).replace(" --no-cache-dir", "")
            with log.open("ab") as out:
                out.write(f"$ {command}\n".encode())
                out.flush()
                done = subprocess.run(
                    ["/bin/sh", "-c", command],
                    cwd=workdir,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                )
            assert done.returncode == 0, f"RUN {i.value} failed:\n{log.read_text()[-4000:]}"
        elif i.keyword == "HEALTHCHECK":
            healthcheck = [path_map(a) for a in exec_form(i.value.split(" CMD ", 1)[1])]
        elif i.keyword == "CMD":
            cmd = [path_map(a) for a in exec_form(i.value)]
    return ImageLayout(layout.app, layout.venv, env, cmd, healthcheck)
