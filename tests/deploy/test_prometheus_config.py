"""Prometheus configurations pass ``promtool check config`` and scrape every replica."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import K8S_DIR, PROMETHEUS_CONFIG, load_yaml, tool

K8S_SCRAPE_CONFIG = K8S_DIR / "monitoring" / "prometheus-scrape-config.yaml"


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "check", "config", str(path)], capture_output=True, text=True
    )


def with_test_credentials(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``config`` with each scrape job's credentials file (a secret mounted where Prometheus
    runs, which promtool checks exists) swapped for a test file."""
    key = folder / "metrics-api-key"
    key.write_text("test-only-key-0123456789abcdef\n", encoding="utf-8")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key)
    return config


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    config = with_test_credentials(load_yaml(PROMETHEUS_CONFIG), tmp_path)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = promtool_check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_catches_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: an unknown service discovery field is refused."""
    config = load_yaml(PROMETHEUS_CONFIG)
    config["scrape_configs"][0]["dns_sd_configs"][0]["kind"] = "A"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert promtool_check(path).returncode != 0


def test_every_replica_is_its_own_target() -> None:
    """DNS discovery of the alias that every replica (GPU or CPU) carries; not the proxy."""
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "dan-align"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd == {"names": ["align-replica"], "type": "A", "port": 8000, "refresh_interval": "10s"}
    assert "static_configs" not in job


def _k8s_prometheus_config() -> dict[str, Any]:
    configmap = load_yaml(K8S_SCRAPE_CONFIG)
    assert configmap["kind"] == "ConfigMap"
    config = yaml.safe_load(configmap["data"]["prometheus.yml"])
    assert isinstance(config, dict)
    return config


def _supports_kubernetes_sd(tmp_path: Path) -> bool:
    probe = {"scrape_configs": [{"job_name": "p", "kubernetes_sd_configs": [{"role": "pod"}]}]}
    path = tmp_path / "probe.yml"
    path.write_text(yaml.safe_dump(probe), encoding="utf-8")
    return promtool_check(path).returncode == 0


def test_kubernetes_scrape_config_passes_promtool(tmp_path: Path) -> None:
    tool("promtool")
    if not _supports_kubernetes_sd(tmp_path):
        pytest.skip(
            "this promtool is built without Kubernetes service discovery (Debian's is); "
            "test_kubernetes_scrape_config_relabelling_passes_promtool checks the rest"
        )
    path = tmp_path / "k8s-prometheus.yml"
    config = with_test_credentials(_k8s_prometheus_config(), tmp_path)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = promtool_check(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_scrape_config_relabelling_passes_promtool(tmp_path: Path) -> None:
    """Everything but the discovery itself (swapped for a static target) through promtool."""
    config = with_test_credentials(_k8s_prometheus_config(), tmp_path)
    (job,) = config["scrape_configs"]
    sd = job.pop("kubernetes_sd_configs")
    assert sd == [{"role": "pod", "namespaces": {"names": ["dan-align"]}}]
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    path = tmp_path / "k8s-prometheus-static.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = promtool_check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    # The labels prometheus-adapter maps to Kubernetes objects.
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod"} <= targets
