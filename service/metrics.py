"""Prometheus metrics of the service: one ``dan_`` prefix, base units, an injectable registry.

Requests by route and status, latency, requests in flight (an ASGI middleware
records them for every route), faces aligned, errors by reason, the queue
(depth, capacity, wait), batches (size, inference time, outcome: ok, partial
when some of its faces failed alone, failed when all did), decoding
and face detection time, readiness and which model runs on which provider (``dan_model_info``),
the confidence of aligned faces (``dan_face_confidence``) and the faces below the least
confidence (``dan_low_confidence_faces_total``: dropped detections, flagged others).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batching import size_buckets

PREFIX = "dan"
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 ... 1.0
OTHER_ROUTE = "other"  # label of paths that are not routes, so scanners cannot grow the series


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Histogram buckets for batch sizes: the batcher's size buckets."""
    return tuple(float(size) for size in size_buckets(max_batch_size))


def batch_outcome(size: int, failed: int) -> str:
    """The outcome label of a batch of ``size`` faces of which ``failed`` got no landmarks."""
    if failed <= 0:
        return "ok"
    return "failed" if failed >= size else "partial"


class ServiceMetrics:
    """Every metric of the service, registered in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None, max_batch_size: int = 64) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.requests = Counter(
            f"{p}_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{p}_request_duration_seconds",
            "Time from receiving a request to the end of its answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(f"{p}_requests_in_flight", "HTTP requests being handled", registry=r)
        self.faces = Counter(
            f"{p}_faces_aligned", "Faces whose landmarks were returned", registry=r
        )
        self.errors = Counter(
            f"{p}_errors",
            "Error answers by reason (the error field of the answer)",
            ["reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{p}_queue_depth", "Faces waiting in the inference queue", registry=r
        )
        self.queue_capacity = Gauge(
            f"{p}_queue_capacity", "Faces the inference queue holds at most", registry=r
        )
        self.queue_wait = Histogram(
            f"{p}_queue_wait_seconds",
            "Time a face waited in the queue before its batch started",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size",
            "Faces per inference run",
            buckets=batch_buckets(max_batch_size),
            registry=r,
        )
        self.inference_duration = Histogram(
            f"{p}_inference_duration_seconds",
            "Run time of one inference batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batches = Counter(
            f"{p}_batches",
            "Inference batches run, by outcome (ok; partial: some faces failed alone; failed)",
            ["outcome"],
            registry=r,
        )
        self.decode_duration = Histogram(
            f"{p}_decode_duration_seconds",
            "Time to decode an upload and cut its face crops",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.detection_duration = Histogram(
            f"{p}_detection_duration_seconds",
            "Time to find the faces of an upload without boxes (the face detector)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.face_confidence = Histogram(
            f"{p}_face_confidence",
            "Confidence of each aligned face (models with a confidence output), dropped ones "
            "included",
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.low_confidence_faces = Counter(
            f"{p}_low_confidence_faces",
            "Faces below the least confidence (DAN_MIN_CONFIDENCE), by action (dropped: "
            "detected faces left out; flagged: other faces answered with status low_confidence)",
            ["action"],
            registry=r,
        )
        for action in ("dropped", "flagged"):
            self.low_confidence_faces.labels(action)
        self.ready = Gauge(
            f"{p}_ready", "1 once the model is loaded and warmed up, else 0", registry=r
        )
        self.model = Info(
            f"{p}_model",
            "The model served, the execution provider running it and its precision",
            registry=r,
        )

    def set_model(
        self,
        name: str,
        version: str,
        provider: str,
        precision: str = "float32",
        mirror_average: bool = False,
    ) -> None:
        """The model served: its name, version, execution provider, precision (float32,
        float16 or int8: its ``dan.precision``) and whether each face is also run mirrored
        (``DAN_MIRROR_AVERAGE``: ``"true"`` or ``"false"``)."""
        self.model.info(
            {
                "name": name,
                "version": version,
                "provider": provider,
                "precision": precision,
                "mirror_average": "true" if mirror_average else "false",
            }
        )

    def record_confidence(self, confidences: Sequence[float], flagged: int, dropped: int) -> None:
        """One request's faces: every confidence, and how many were flagged and dropped."""
        for confidence in confidences:
            self.face_confidence.observe(confidence)
        if flagged:
            self.low_confidence_faces.labels("flagged").inc(flagged)
        if dropped:
            self.low_confidence_faces.labels("dropped").inc(dropped)

    def track_queue(self, depth: Callable[[], int], capacity: int) -> None:
        self.queue_depth.set_function(lambda: float(depth()))
        self.queue_capacity.set(capacity)

    # BatchObserver
    def batch_done(
        self, size: int, queue_waits: Sequence[float], inference_s: float, failed: int
    ) -> None:
        self.batch_size.observe(size)
        self.inference_duration.observe(inference_s)
        for wait in queue_waits:
            self.queue_wait.observe(wait)
        self.batches.labels(batch_outcome(size, failed)).inc()


class RequestMetricsMiddleware:
    """ASGI middleware counting every HTTP request by route and status, with its latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self.routes else OTHER_ROUTE
        status = 500  # if the app fails before answering

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)
