"""service.metrics: names with one prefix and base units, in a registry of the caller's."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.metrics import ServiceMetrics, batch_buckets


def test_metrics_live_in_the_given_registry_and_move() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, max_batch_size=8)
    ServiceMetrics(CollectorRegistry(), max_batch_size=8)  # a second instance does not clash
    metrics.batch_done(3, [0.001, 0.002, 0.004], 0.02, failed=0)
    metrics.batch_done(1, [0.5], 0.01, failed=1)
    metrics.batch_done(2, [0.1, 0.1], 0.01, failed=1)  # one face failed alone
    metrics.set_model("tiny", "0.0.1", "cpu")
    depth = [5]
    metrics.track_queue(lambda: depth[0], capacity=64)
    value = registry.get_sample_value
    assert value("dan_batch_size_count") == 3
    assert value("dan_batch_size_sum") == 6
    assert value("dan_batch_size_bucket", {"le": "4.0"}) == 3
    assert value("dan_queue_wait_seconds_count") == 6
    assert value("dan_inference_duration_seconds_sum") == pytest.approx(0.04)
    assert value("dan_batches_total", {"outcome": "ok"}) == 1
    assert value("dan_batches_total", {"outcome": "failed"}) == 1
    assert value("dan_batches_total", {"outcome": "partial"}) == 1
    labels = {
        "name": "tiny",
        "version": "0.0.1",
        "provider": "cpu",
        "precision": "float32",
        "mirror_average": "false",
    }
    assert value("dan_model_info", labels) == 1
    assert value("dan_queue_depth") == 5
    depth[0] = 2
    assert value("dan_queue_depth") == 2
    assert value("dan_queue_capacity") == 64


def test_every_name_has_the_prefix_and_base_units() -> None:
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    text = generate_latest(registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert names and all(n.startswith("dan_") for n in names)
    assert not any(n.endswith(("_ms", "_milliseconds")) for n in names)
    histograms = {line.split()[2] for line in text.splitlines() if line.endswith(" histogram")}
    # Counts and ratios have no unit: faces per batch, a face's confidence (issue 14's name).
    unitless = {"dan_batch_size", "dan_face_confidence"}
    assert unitless <= histograms
    assert histograms - unitless == {n for n in histograms if n.endswith("_seconds")}


def test_batch_buckets() -> None:
    assert batch_buckets(1) == (1.0,)
    assert batch_buckets(12) == (1.0, 2.0, 4.0, 8.0, 12.0)
