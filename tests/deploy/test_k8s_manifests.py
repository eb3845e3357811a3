"""The Kubernetes manifests validate offline against the Kubernetes schemas and agree with
the image, the service's settings and its metrics."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    K8S_DIR,
    REPO,
    dockerfile_instructions,
    image_environment,
    load_yaml,
    load_yaml_documents,
)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (scripts/test.sh does it)"
)

# The oldest Kubernetes release still supported upstream when this was written, and the newest
# the validator ships schemas for.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
CORE_MANIFESTS = sorted(
    p
    for p in [*K8S_DIR.glob("*.yaml"), *K8S_DIR.glob("*/*.yaml")]
    if p.name not in ("kustomization.yaml", "servicemonitor.yaml", "prometheus-adapter-values.yaml")
)
SERVICE_MONITOR = K8S_DIR / "monitoring" / "servicemonitor.yaml"
ADAPTER_VALUES = K8S_DIR / "queue-depth" / "prometheus-adapter-values.yaml"


def _objects(path: Path) -> list[dict[str, Any]]:
    return load_yaml_documents(path)


def _one(kind: str, folder: Path = K8S_DIR) -> dict[str, Any]:
    found = [o for p in sorted(folder.glob("*.yaml")) for o in _objects(p) if o.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in {folder}, found {len(found)}"
    return found[0]


def _container() -> dict[str, Any]:
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_there_are_manifests_to_validate() -> None:
    kinds = {o["kind"] for p in CORE_MANIFESTS for o in _objects(p)}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", CORE_MANIFESTS, ids=lambda p: str(p.relative_to(K8S_DIR)))
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    for obj in _objects(path):
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_catches_a_misspelt_field() -> None:
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomizations_list_existing_files() -> None:
    for path in K8S_DIR.rglob("kustomization.yaml"):
        kustomization = load_yaml(path)
        for entry in kustomization.get("resources", []):
            assert (path.parent / entry).exists(), f"{path}: {entry}"
        for patch in kustomization.get("patches", []):
            assert (path.parent / patch["path"]).is_file(), f"{path}: {patch}"
    base = load_yaml(K8S_DIR / "kustomization.yaml")["resources"]
    manifests = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(base) == sorted(manifests)


def test_deployment_requests_a_gpu_and_runs_the_image_unprivileged() -> None:
    container = _container()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert container["image"] == f"dan-align:{version}-gpu"
    assert "command" not in container and "args" not in container  # the image's CMD
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 == resources["requests"]["nvidia.com/gpu"]
    assert resources["requests"]["cpu"]  # the CPU HorizontalPodAutoscaler needs a request
    pod = _one("Deployment")["spec"]["template"]["spec"]
    image_user = next(i.value for i in dockerfile_instructions() if i.keyword == "USER")
    assert pod["securityContext"]["runAsUser"] == int(image_user.split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_probes_use_the_health_endpoints_on_the_images_port() -> None:
    container = _container()
    port = int(image_environment(dockerfile_instructions())["DAN_PORT"])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    annotations = _one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_deployment_sets_only_valid_service_settings(tmp_path: Path) -> None:
    from service.config import Settings

    keys = tmp_path / "keys"
    keys.write_text("test-only-key-0123456789abcdef\n")
    env = {e["name"]: e["value"] for e in _container()["env"]}
    known = {f"DAN_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    Settings.model_validate(
        {k[len("DAN_") :].lower(): v for k, v in env.items()}
        | {"model_path": Path(__file__)}  # the image's, and the Secret's files below
        | {"api_keys_file": keys, "metrics_api_keys_file": keys}
    )
    grace = _one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert float(env["DAN_SHUTDOWN_TIMEOUT_S"]) + 5 < grace  # preStop sleep 5 s, then drain
    limits = _container()["resources"]["limits"]
    assert int(env["DAN_CPU_THREADS"]) == int(limits["cpu"])


def test_service_and_service_monitor_select_the_pods() -> None:
    pod_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (monitor,) = _objects(SERVICE_MONITOR)
    assert (
        monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    )
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("folder", [K8S_DIR, K8S_DIR / "queue-depth"])
def test_autoscalers_scale_the_deployment(folder: Path) -> None:
    hpa = _one("HorizontalPodAutoscaler", folder)
    deployment = _one("Deployment")
    assert hpa["metadata"]["name"] == "dan-align"  # the queue-depth one replaces the CPU one
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_queue_depth_autoscaler_uses_the_adapters_metric() -> None:
    hpa = _one("HorizontalPodAutoscaler", K8S_DIR / "queue-depth")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    values = load_yaml(ADAPTER_VALUES)
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"] == "dan_queue_depth"
    assert rule["seriesQuery"].startswith("dan_queue_depth{")
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    # A quarter of the queue's default capacity: scaling starts well before 503 queue_full.
    from service.config import Settings

    capacity = Settings.model_fields["max_queue_size"].default
    assert float(metric["pods"]["target"]["averageValue"]) == capacity / 4


def test_queue_depth_metric_is_exported_by_the_service() -> None:
    """The adapter's series is one the service registers (the live scrape checks the rest)."""
    from prometheus_client import CollectorRegistry

    from service.metrics import ServiceMetrics

    registry = CollectorRegistry()
    ServiceMetrics(registry)
    names = {sample.name for family in registry.collect() for sample in family.samples}
    assert "dan_queue_depth" in names


def test_api_keys_come_from_a_secret_for_the_pods_and_the_scrapers() -> None:
    container = _container()
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "DAN_API_KEYS" not in env and "DAN_METRICS_API_KEYS" not in env  # no key in the spec
    mount = next(m for m in container["volumeMounts"] if m["name"] == "api-keys")
    assert mount["readOnly"] is True
    assert env["DAN_API_KEYS_FILE"] == mount["mountPath"] + "/align"
    assert env["DAN_METRICS_API_KEYS_FILE"] == mount["mountPath"] + "/metrics"
    pod = _one("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    secret = volume["secret"]["secretName"]
    assert secret == "dan-align-api-keys"
    monitor = load_yaml(K8S_DIR / "monitoring" / "servicemonitor.yaml")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": secret, "key": "metrics"},
    }
    scrape = load_yaml(K8S_DIR / "monitoring" / "prometheus-scrape-config.yaml")
    (job,) = yaml.safe_load(scrape["data"]["prometheus.yml"])["scrape_configs"]
    assert job["authorization"]["credentials_file"].endswith(f"/{secret}/metrics")
