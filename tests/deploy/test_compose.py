"""docker-compose.yml (and its CPU override) validate and describe the stack the issue asks for.

``docker-compose config`` (Debian's docker-compose, no daemon needed) validates the files
against the Compose specification and prints them resolved; the tests read that output.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    COMPOSE_CPU_FILE,
    COMPOSE_FILE,
    NGINX_CONF,
    REPO,
    REQUIRED_COMPOSE_VARIABLES,
    dockerfile_instructions,
    final_stage,
    tool,
)

GPU = (COMPOSE_FILE,)
CPU = (COMPOSE_FILE, COMPOSE_CPU_FILE)
REPLICA_ALIAS = "align-replica"


def compose_config(files: tuple[Path, ...], **env: str) -> dict[str, Any]:
    """The resolved configuration that ``docker-compose config`` prints (fails if invalid)."""
    args = [tool("docker-compose"), "--project-directory", str(REPO)]
    for f in files:
        args += ["-f", str(f)]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DAN_"))}
    environ.update({**REQUIRED_COMPOSE_VARIABLES, **env})
    done = subprocess.run([*args, "config"], capture_output=True, text=True, env=environ)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def gpu() -> dict[str, Any]:
    return compose_config(GPU)


@pytest.fixture(scope="module")
def cpu() -> dict[str, Any]:
    return compose_config(CPU)


def _version() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return str(project["version"])


def test_grafana_password_is_required() -> None:
    args = [tool("docker-compose"), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    environ = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    done = subprocess.run([*args, "config"], capture_output=True, text=True, env=environ)
    assert done.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in done.stderr


def test_gpu_replicas_reserve_a_gpu(gpu: dict[str, Any]) -> None:
    align = gpu["services"]["align"]
    assert align["build"]["args"]["FLAVOUR"] == "gpu"
    assert align["image"] == f"dan-align:{_version()}-gpu"
    assert align["deploy"]["replicas"] == 2
    devices = align["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert align["environment"]["DAN_PROVIDER"] == "cuda"
    assert gpu["services"]["align-cpu"]["deploy"]["replicas"] == 0


def test_cpu_override_runs_cpu_replicas_only(cpu: dict[str, Any]) -> None:
    align, align_cpu = cpu["services"]["align"], cpu["services"]["align-cpu"]
    assert align["deploy"]["replicas"] == 0
    # No CUDA base is pulled on a host without a GPU.
    assert align["build"]["args"]["FLAVOUR"] == "cpu"
    assert align["image"] == align_cpu["image"] == f"dan-align:{_version()}-cpu"
    assert align_cpu["deploy"]["replicas"] == 2
    assert align_cpu["build"]["args"]["FLAVOUR"] == "cpu"
    assert "reservations" not in align_cpu["deploy"]["resources"]
    assert align_cpu["environment"]["DAN_PROVIDER"] == "cpu"


def test_replica_count_and_limits_follow_the_variables() -> None:
    config = compose_config(CPU, ALIGN_REPLICAS="5", ALIGN_CPUS="3", ALIGN_MEMORY="6g")
    align_cpu = config["services"]["align-cpu"]
    assert align_cpu["deploy"]["replicas"] == 5
    assert float(align_cpu["deploy"]["resources"]["limits"]["cpus"]) == 3.0
    assert align_cpu["deploy"]["resources"]["limits"]["memory"] == "6g"
    assert align_cpu["environment"]["DAN_CPU_THREADS"] == "3"


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_every_service_restarts_is_limited_and_healthchecked(
    variant: str, request: pytest.FixtureRequest
) -> None:
    config: dict[str, Any] = request.getfixturevalue(variant)
    assert set(config["services"]) == {"align", "align-cpu", "proxy", "prometheus", "grafana"}
    for name, service in config["services"].items():
        assert service["restart"] == "unless-stopped", name
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and limits["memory"], name
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["logging"]["driver"] == "json-file", name


def test_replicas_share_the_alias_and_the_images_health_check(gpu: dict[str, Any]) -> None:
    instructions = dockerfile_instructions()
    stage = [i for i in instructions if i.stage == final_stage(instructions)]
    image_check = next(i for i in stage if i.keyword == "HEALTHCHECK").value.split(" CMD ")[1]
    for name in ("align", "align-cpu"):
        service = gpu["services"][name]
        assert service["networks"]["backend"]["aliases"] == [REPLICA_ALIAS], name
        assert service["healthcheck"]["test"] == ["CMD", *yaml.safe_load(image_check)], name
        assert service["read_only"] is True and service["init"] is True, name
        limits = service["deploy"]["resources"]["limits"]
        assert int(service["environment"]["DAN_CPU_THREADS"]) == int(float(limits["cpus"]))
        # Drain within the stop grace period.
        assert float(service["environment"]["DAN_SHUTDOWN_TIMEOUT_S"]) < 30.0
        assert service["stop_grace_period"] == "30s"


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_start_up_is_health_gated(variant: str, request: pytest.FixtureRequest) -> None:
    services = request.getfixturevalue(variant)["services"]
    assert services["proxy"]["depends_on"] == {
        "align": {"condition": "service_healthy"},
        "align-cpu": {"condition": "service_healthy"},
    }
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def test_compose_sets_only_known_service_settings(gpu: dict[str, Any], tmp_path: Path) -> None:
    from service.config import Settings

    keys = tmp_path / "keys"
    keys.write_text("test-only-key-0123456789abcdef\n")
    known = {f"DAN_{name.upper()}" for name in Settings.model_fields}
    for name in ("align", "align-cpu"):
        env = gpu["services"][name]["environment"]
        assert set(env) <= known, set(env) - known
        # The values are valid settings too (the model path and the key files aside, which
        # are the image's and the secrets').
        Settings.model_validate(
            {k[len("DAN_") :].lower(): v for k, v in env.items()}
            | {"model_path": Path(__file__)}  # any existing file: the path is not checked here
            | {"api_keys_file": keys, "metrics_api_keys_file": keys}
        )


def test_api_keys_are_secrets_the_replicas_and_prometheus_read(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    secrets = gpu["secrets"]
    assert set(secrets) == {"align-api-keys", "metrics-api-key"}
    assert secrets["align-api-keys"]["file"].endswith(
        REQUIRED_COMPOSE_VARIABLES["ALIGN_API_KEYS_FILE"]
    )
    for name in ("align", "align-cpu"):
        service = services[name]
        names = {s if isinstance(s, str) else s["source"] for s in service["secrets"]}
        assert names == {"align-api-keys", "metrics-api-key"}
        env = service["environment"]
        assert env["DAN_API_KEYS_FILE"] == "/run/secrets/align-api-keys"
        assert env["DAN_METRICS_API_KEYS_FILE"] == "/run/secrets/metrics-api-key"
        assert "DAN_API_KEYS" not in env and "DAN_METRICS_API_KEYS" not in env  # no key in env
    names = {s if isinstance(s, str) else s["source"] for s in services["prometheus"]["secrets"]}
    assert names == {"metrics-api-key"}
    scrape = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "dan-align"]
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/secrets/metrics-api-key",
    }


@pytest.mark.parametrize("variable", ["ALIGN_API_KEYS_FILE", "METRICS_API_KEY_FILE"])
def test_the_api_key_files_are_required(variable: str) -> None:
    args = [tool("docker-compose"), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DAN_"))}
    environ.update(REQUIRED_COMPOSE_VARIABLES)
    del environ[variable]
    done = subprocess.run([*args, "config"], capture_output=True, text=True, env=environ)
    assert done.returncode != 0
    assert variable in done.stderr


def _ports(service: dict[str, Any]) -> list[str]:
    """Published ports as docker-compose 1 prints them: HOST_IP:PUBLISHED:TARGET/PROTOCOL."""
    return [str(p) for p in service.get("ports", [])]


def _binds(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts, source -> target, from the SOURCE:TARGET:MODE strings printed."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, _mode = str(volume).split(":")
        if source.startswith("/"):
            out[source] = target
    return out


def test_only_the_proxy_is_published_to_the_network(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    assert _ports(services["proxy"]) == ["0.0.0.0:8080:8080/tcp"]
    assert _ports(services["prometheus"]) == ["127.0.0.1:9090:9090/tcp"]
    assert _ports(services["grafana"]) == ["127.0.0.1:3000:3000/tcp"]
    assert not _ports(services["align"]) and not _ports(services["align-cpu"])


def test_proxy_prometheus_and_grafana_mount_the_configs_under_docker(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    assert _binds(services["proxy"]) == {str(NGINX_CONF): "/etc/nginx/nginx.conf"}
    assert _binds(services["prometheus"]) == {
        str(REPO / "docker/prometheus/prometheus.yml"): "/etc/prometheus/prometheus.yml"
    }
    assert _binds(services["grafana"]) == {
        str(REPO / "docker/grafana/provisioning"): "/etc/grafana/provisioning",
        str(REPO / "docker/grafana/dashboards"): "/etc/grafana/dashboards",
    }
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/etc/grafana/dashboards/dan-align.json"
    assert (REPO / "docker/grafana/dashboards/dan-align.json").is_file()


def test_nginx_config_is_valid(tmp_path: Path) -> None:
    done = subprocess.run(
        [tool("nginx"), "-t", "-q", "-e", str(tmp_path / "error.log"), "-c", str(NGINX_CONF)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_nginx_balances_over_every_replica() -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    assert "resolver 127.0.0.11" in text  # Docker's DNS: one address per running replica
    assert re.search(rf"set \$align_upstream http://{REPLICA_ALIAS}:8000;", text)
    assert "proxy_pass $align_upstream;" in text
    assert "listen 8080;" in text
