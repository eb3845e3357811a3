"""Prometheus metrics of the video streams (``GET /align/stream``), in the service's registry.

- ``dan_streams_open``: streams open now;
- ``dan_stream_closes_total{reason}``: streams closed, by why (``client``: the client closed
  or went away; ``idle_timeout``; ``shutting_down``; ``too_many_streams``, ``not_ready``:
  refused on opening; ``error``: an unexpected failure);
- ``dan_stream_frames_received_total``: frames read from the streams;
- ``dan_stream_frames_total{source}``: frames answered, by where their faces came from
  (``track``: every face followed from the previous frame; ``detector``, ``whole_image``,
  ``request``: the detector, the box-less procedure or the client's boxes ran on the frame;
  ``error``: the frame was answered with an error);
- ``dan_stream_redetections_total{reason}``: frames on which the detector ran, by why
  (``first_frame``, ``no_faces``, ``interval``, ``low_confidence``, ``lost``);
- ``dan_stream_frame_duration_seconds``: from a frame's arrival to its answer;
- ``dan_stream_duration_seconds``: how long streams stayed open.

Frames' errors are also in ``dan_errors_total{reason}`` and their faces in the face metrics,
as for ``/align``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.metrics import LATENCY_BUCKETS, PREFIX

CLOSE_REASONS = (
    "client",
    "idle_timeout",
    "shutting_down",
    "too_many_streams",
    "not_ready",
    "error",
)
FRAME_SOURCES = ("track", "detector", "whole_image", "request", "error")
REDETECT_REASONS = ("first_frame", "no_faces", "interval", "low_confidence", "lost")
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class StreamMetrics:
    """The stream metrics, registered in ``registry`` (the service's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = PREFIX
        self.open = Gauge(f"{p}_streams_open", "Video streams open now", registry=registry)
        self.closes = Counter(
            f"{p}_stream_closes",
            "Video streams closed, by reason (client, idle_timeout, shutting_down, "
            "too_many_streams, not_ready, error)",
            ["reason"],
            registry=registry,
        )
        self.received = Counter(
            f"{p}_stream_frames_received", "Frames read from video streams", registry=registry
        )
        self.frames = Counter(
            f"{p}_stream_frames",
            "Stream frames answered, by the source of their faces (track: followed from the "
            "previous frame; detector, whole_image, request: found afresh; error: answered "
            "with an error)",
            ["source"],
            registry=registry,
        )
        self.redetections = Counter(
            f"{p}_stream_redetections",
            "Stream frames on which the detector ran, by reason",
            ["reason"],
            registry=registry,
        )
        self.frame_duration = Histogram(
            f"{p}_stream_frame_duration_seconds",
            "Time from a stream frame's arrival to its answer",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            f"{p}_stream_duration_seconds",
            "How long video streams stayed open",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        for reason in CLOSE_REASONS:
            self.closes.labels(reason)
        for source in FRAME_SOURCES:
            self.frames.labels(source)
        for reason in REDETECT_REASONS:
            self.redetections.labels(reason)
