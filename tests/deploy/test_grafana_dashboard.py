"""The Grafana dashboard and its provisioning: the JSON loads, has the panels the issue lists,
every query is valid PromQL (promtool) and names only metrics and labels that a live
``/metrics`` scrape of the real service exports."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from deploy_promql import read, substitute
from deploy_support import DASHBOARD, GRAFANA_DIR, ContainerService, load_yaml, tool
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

DATASOURCE_UID = "prometheus"
# Labels Prometheus adds to every series of a target (docker/prometheus/prometheus.yml).
TARGET_LABELS = {"instance", "job", "service", "namespace", "pod", "node"}
# What ops asked to see (issue 6), each matched by a panel title.
REQUIRED_PANELS = {
    "request rate": r"request rate",
    "error rate": r"error ratio|errors",
    "latency percentiles": r"latency percentiles",
    "queue depth": r"queue depth",
    "batch-size distribution": r"batch-size distribution",
    "inference time": r"inference time",
    "faces per second": r"faces per second",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row's panels
    return out


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title / refId, PromQL with the dashboard's variables replaced)."""
    variables = {f"${v['name']}": ".*" for v in dashboard["templating"]["list"]}
    return [
        (f"{p['title']} / {t['refId']}", substitute(t["expr"], variables))
        for p in _panels(dashboard)
        for t in p.get("targets", [])
    ]


@pytest.fixture(scope="module")
def live_metrics(container_service: ContainerService) -> dict[str, set[str]]:
    """Sample name -> label names, from the service's /metrics after real traffic: one face
    aligned and one refused upload, so labelled series have children."""
    client = container_service.service.client
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    ok = client.post(
        "/align",
        files={"image": ("face.png", buffer.getvalue())},
        data={"boxes": "[[40, 40, 160, 160]]"},
    )
    assert ok.status_code == 200, ok.text
    refused = client.post("/align", files={"image": ("x.png", b"not an image")})
    assert refused.status_code >= 400
    answer = client.get("/metrics")
    assert answer.status_code == 200
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_dashboard_loads_with_unique_ids_and_a_layout(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "dan-align" and dashboard["title"]
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel.get("description"), panel["title"]


def test_dashboard_has_the_panels_ops_asked_for(dashboard: dict[str, Any]) -> None:
    titles = [p["title"].lower() for p in _panels(dashboard)]
    for what, pattern in REQUIRED_PANELS.items():
        assert any(re.search(pattern, t) for t in titles), f"no panel for {what}: {titles}"


def test_time_series_are_per_replica(dashboard: dict[str, Any]) -> None:
    """Every time series panel but the batch histogram splits its lines by instance."""
    for panel in _panels(dashboard):
        if panel["type"] == "timeseries":
            for target in panel["targets"]:
                query = read(substitute(target["expr"], {"$instance": ".*"}))
                per_replica = "instance" in query.grouping or (
                    not query.grouping and "{{instance}}" in target["legendFormat"]
                )
                if "capacity" not in target["legendFormat"]:
                    assert per_replica, f"{panel['title']}: {target['expr']}"
    instance = next(v for v in dashboard["templating"]["list"] if v["name"] == "instance")
    assert instance["includeAll"] and instance["multi"]


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every query (as a recording rule) and the variable's query metric."""
    queries = _queries(dashboard)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expr}
                    for n, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


@pytest.mark.process
def test_queries_name_only_what_the_live_service_exports(
    dashboard: dict[str, Any], live_metrics: dict[str, set[str]]
) -> None:
    used: set[str] = set()
    for where, expr in _queries(dashboard):
        query = read(expr)
        assert query.selectors, f"{where}: no metric in {expr}"
        for metric, labels in query.selectors:
            assert metric in live_metrics, f"{where}: {metric} is not in /metrics"
            unknown = labels - live_metrics[metric] - TARGET_LABELS
            assert not unknown, f"{where}: {metric} has no label(s) {unknown}"
            used.add(metric)
        exported = set().union(*(live_metrics[m] for m in query.metrics))
        unknown = query.grouping - exported - TARGET_LABELS
        assert not unknown, f"{where}: grouping by label(s) {unknown} that no series has"
    for variable in dashboard["templating"]["list"]:
        metric, label = re.fullmatch(
            r"label_values\((\w+), *(\w+)\)", variable["definition"]
        ).groups()  # type: ignore[union-attr]
        assert metric in live_metrics and label in TARGET_LABELS
    # The queries are not trivially few: the service's core metrics all show up.
    for core in (
        "dan_requests_total",
        "dan_request_duration_seconds_bucket",
        "dan_queue_depth",
        "dan_batch_size_bucket",
        "dan_inference_duration_seconds_bucket",
        "dan_faces_aligned_total",
        "dan_errors_total",
    ):
        assert core in used, core


def test_queries_reader_sees_metrics_and_labels() -> None:
    """The reader the check above relies on, on a query of each shape the dashboard uses."""
    query = read(
        'histogram_quantile(0.99, sum by (instance, le) (rate(dan_x_bucket{route="/align", '
        'instance=~".*"}[1m]))) / on (instance) group_left max(dan_y) and dan_z offset 5m'
    )
    assert query.selectors == [
        ("dan_x_bucket", {"route", "instance"}),
        ("dan_y", set()),
        ("dan_z", set()),
    ]
    assert query.grouping == {"instance", "le"}


def test_provisioned_datasource_is_the_dashboards() -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"  # the compose service
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dan-align.yml")
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"  # docker-compose.yml's mount
