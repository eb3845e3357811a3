"""The service's settings: one pydantic-settings class, read from ``DAN_*`` environment variables.

This is the only place that reads the environment. Every value is checked when
``Settings()`` is built, so a bad value stops start-up with a message naming
the variable, what it expects and what it got.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DAN_"
# The released model ships inside the ``model`` package, next to this one.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "model" / "dan-300w.onnx"

Provider = Literal["auto", "cpu", "cuda", "tensorrt"]
DetectorName = Literal["centerface", "none"]
DetectorInit = Literal["box", "keypoints"]
DetectorPrecision = Literal["auto", "float32", "int8"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
FaceOrder = Literal["score", "area"]

# Settings whose values are never shown in a message (API keys).
SECRET_SETTINGS = frozenset({"api_keys", "metrics_api_keys"})
MIN_API_KEY_LENGTH = 16

# Default largest batch per kind of device: a 2-core CPU gains nothing beyond a few faces per
# run, a GPU keeps gaining up to a few dozen.
DEFAULT_MAX_BATCH_CPU = 8
DEFAULT_MAX_BATCH_GPU = 32


class Settings(BaseSettings):
    """Everything an operator can set, with its environment variable ``DAN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # The model.
    model_path: Path = Field(
        default=DEFAULT_MODEL_PATH,
        description="ONNX file written by training.export (default: the bundled model/dan-300w.onnx)",
    )
    # Execution.
    provider: Provider = Field(
        default="auto",
        description=(
            "auto: CUDA when onnxruntime offers it, else CPU; cpu; cuda (fail if absent); "
            "tensorrt (TensorRT, CUDA for what it cannot run)"
        ),
    )
    cpu_threads: int = Field(
        default=0, ge=0, le=256, description="CPU provider threads; 0 = all cores"
    )
    cuda_device_id: int = Field(default=0, ge=0, le=63, description="GPU used by cuda / tensorrt")
    gpu_fp16: bool = Field(default=False, description="fp16 kernels; needs provider tensorrt")
    io_binding: bool | None = Field(
        default=None, description="bind inputs and outputs to device buffers; default: on for GPUs"
    )
    # The batching queue.
    max_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description=(
            f"faces per inference run; default {DEFAULT_MAX_BATCH_CPU} on CPU, "
            f"{DEFAULT_MAX_BATCH_GPU} on GPU"
        ),
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="longest a face waits for others to fill its batch",
    )
    max_queue_size: int = Field(
        default=64, ge=1, le=100_000, description="faces waiting for inference; beyond it: 503"
    )
    max_queue_wait_ms: float = Field(
        default=2_000.0,
        gt=0.0,
        le=600_000.0,
        description="503 at once for a request when the inference ahead of it (faces queued and "
        "in preparation x the recent time per face) passes this: bounds the latency of accepted "
        "requests under overload on any hardware",
    )
    max_pending_requests: int = Field(
        default=128, ge=1, le=100_000, description="/align requests in progress; beyond it: 503"
    )
    request_deadline_ms: float = Field(
        default=10_000.0,
        gt=0.0,
        le=600_000.0,
        description="a request not answered by then gets 504 (503 at once if the queue "
        "already holds more work than that)",
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="Retry-After of 503 answers")
    # Uploads.
    max_image_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="largest encoded image (413 beyond)",
    )
    max_image_pixels: int = Field(
        default=40_000_000, ge=64, le=150_000_000, description="largest width x height (413 beyond)"
    )
    max_faces: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="most boxes in one request (422 beyond); most detected faces kept per image "
        "(the best scores)",
    )
    decode_threads: int = Field(
        default=2, ge=1, le=256, description="threads that decode and crop images"
    )
    # Face detection (requests without boxes).
    detector: DetectorName = Field(
        default="centerface",
        description="face detector for requests without boxes: centerface; none = the paper's "
        "box-less procedure (one centred face)",
    )
    detector_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="least detector score of a face"
    )
    detector_min_face: float = Field(
        default=20.0,
        ge=1.0,
        le=100_000.0,
        description="smallest detected face kept: its box's shorter side in image pixels",
    )
    detector_max_side: int = Field(
        default=640,
        ge=32,
        le=8192,
        description="images are shrunk so that their longer side is at most this many pixels "
        "before detection (faces under about 1/40 of it are missed)",
    )
    detector_precision: DetectorPrecision = Field(
        default="auto",
        description="CenterFace's graph: auto = int8 on CPU when service/detectors/"
        "centerface.int8.onnx is there (python -m bench.centerface_int8), else float32; "
        "int8 (fail without that file); float32",
    )
    detector_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="CPU threads of one face detection; 0 = DAN_CPU_THREADS. Concurrent requests "
        "detect in parallel on the decode threads, so 1 wastes nothing under load",
    )
    detector_init: DetectorInit = Field(
        default="box",
        description="box: crop from the detector's box mapped to the model's box convention; "
        "keypoints: crop from the detector's eye, nose and mouth points",
    )
    face_order: FaceOrder = Field(
        default="score",
        description="order of detected faces in the answer (and which DAN_MAX_FACES are kept): "
        "score: best detector score first; area: largest box first. Request boxes keep their "
        "order",
    )
    min_confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="least confidence of a face: below it a detected face is dropped, a face of "
        "a request box is answered with status low_confidence; default: the model's own "
        "threshold (needs a model with a confidence output)",
    )
    mirror_average: bool = Field(
        default=False,
        description="run each face's crop also mirrored left-right and answer the average of the "
        "two (landmarks and confidence): lower error (3.62% -> 3.52% on 300-W common for model "
        "1.2.0) for twice the model's work per face",
    )
    # Start-up and shutdown.
    warmup_runs: int = Field(
        default=2, ge=1, le=100_000, description="full-batch runs before the service reports ready"
    )
    shutdown_timeout_s: int = Field(
        default=30, ge=0, le=3600, description="longest wait for requests in flight on SIGTERM"
    )
    # Video streams (GET /align/stream, service.streaming).
    max_streams: int = Field(
        default=32,
        ge=1,
        le=100_000,
        description="open video streams at most; one more is closed at once with code 1013 "
        "(try again later), reason too_many_streams. Less than DAN_MAX_CONNECTIONS",
    )
    stream_idle_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=86_400.0,
        description="a stream with no frame in progress that receives no message for this long "
        "is closed with code 4408, reason idle_timeout",
    )
    stream_redetect_every: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="a stream runs the face detector again on every N-th frame (and on the "
        "first, when it has no face, and when a followed face is lost); a stream's "
        "redetect_every option overrides it",
    )
    stream_smoothing: bool = Field(
        default=True,
        description="smooth a stream's landmarks over time (the One Euro filter); a stream's "
        "smoothing option overrides it",
    )
    stream_smoothing_min_cutoff_hz: float = Field(
        default=1.0,
        gt=0.0,
        le=1000.0,
        description="the One Euro filter's cut-off for a still face (lower: less jitter, more "
        "lag), frames taken as 1/30 s apart",
    )
    stream_smoothing_beta: float = Field(
        default=64.0,
        ge=0.0,
        le=1000.0,
        description="how much the One Euro filter's cut-off rises with speed, in Hz per "
        "inter-ocular distance per second (higher: less lag on fast motion)",
    )
    # HTTP server: slow and idle clients.
    body_timeout_ms: float = Field(
        default=10_000.0,
        gt=0.0,
        le=600_000.0,
        description="longest an /align request's body may take to arrive after its headers; "
        "beyond, 408 body_timeout and the connection is closed. A request counts against "
        "DAN_MAX_PENDING_REQUESTS (and its deadline starts) only once its body is in",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="a connection whose request headers are not complete this long after it "
        "opened (or after its previous answer) is closed, however slowly bytes trickle in",
    )
    keep_alive_s: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="an idle connection is closed this long after its last answer; at most "
        "DAN_HEADER_TIMEOUT_S",
    )
    max_connections: int = Field(
        default=512,
        ge=2,
        le=100_000,
        description="open connections (and requests in progress) at most; beyond, the HTTP server "
        "answers 503 at once. More than DAN_MAX_PENDING_REQUESTS; bounds the memory of bodies "
        "being read (this x the largest body)",
    )
    # Access control.
    api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="keys that POST /align (and every /align/... route) requires, comma-separated; "
        "sent as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (401 without a valid one). "
        "Empty, with no DAN_API_KEYS_FILE: /align is open",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="a file of /align keys, one per line ('#' starts a comment), added to "
        "DAN_API_KEYS: the way to pass them as a secret (compose, Kubernetes)",
    )
    metrics_api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="keys that GET /metrics requires, comma-separated, as for DAN_API_KEYS. "
        "Empty, with no DAN_METRICS_API_KEYS_FILE: /metrics is open",
    )
    metrics_api_keys_file: Path | None = Field(
        default=None, description="a file of /metrics keys, one per line, as DAN_API_KEYS_FILE"
    )
    docs: bool = Field(
        default=True,
        description="serve the API documentation (/docs, /redoc) and its schema "
        "(/openapi.json); false: all three answer 404",
    )
    # HTTP server.
    host: str = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port to listen on")
    log_level: LogLevel = Field(
        default="info", description="critical, error, warning, info or debug"
    )
    access_log: bool = Field(
        default=False, description="one log line per request (uvicorn access log)"
    )
    demo_page: bool = Field(
        default=True,
        description="serve the demo page at GET / (its files under /demo/); false: the API only, "
        "GET / answers 404",
    )

    _align_keys: frozenset[str] = PrivateAttr(default=frozenset())
    _metrics_keys: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("api_keys_file", "metrics_api_keys_file")
    @classmethod
    def _key_file_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"expected a file of API keys, one per line, but {path} is not a file")
        return path

    @field_validator("model_path")
    @classmethod
    def _model_file_exists(cls, value: Path) -> Path:
        path = value.expanduser().resolve()
        if not path.is_file():
            raise ValueError(
                f"expected an ONNX model file written by training.export, but {path} "
                f"{'is a directory' if path.is_dir() else 'does not exist'}"
            )
        return path

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_faces > self.max_queue_size:
            raise ValueError(
                f"DAN_MAX_FACES ({self.max_faces}) must be at most DAN_MAX_QUEUE_SIZE "
                f"({self.max_queue_size}): a request with that many faces could never be queued"
            )
        if self.max_queue_wait_ms > self.request_deadline_ms:
            raise ValueError(
                f"DAN_MAX_QUEUE_WAIT_MS ({self.max_queue_wait_ms:g}) must be at most "
                f"DAN_REQUEST_DEADLINE_MS ({self.request_deadline_ms:g}): a face allowed to wait "
                "longer than the deadline would be answered 504 instead of 503"
            )
        if self.keep_alive_s > self.header_timeout_s:
            raise ValueError(
                f"DAN_KEEP_ALIVE_S ({self.keep_alive_s}) must be at most DAN_HEADER_TIMEOUT_S "
                f"({self.header_timeout_s:g}): an idle connection waits for its next request's "
                "headers"
            )
        if self.max_connections <= self.max_pending_requests:
            raise ValueError(
                f"DAN_MAX_CONNECTIONS ({self.max_connections}) must be more than "
                f"DAN_MAX_PENDING_REQUESTS ({self.max_pending_requests}): every request in "
                "progress holds a connection, and health checks need one too"
            )
        if self.max_streams >= self.max_connections:
            raise ValueError(
                f"DAN_MAX_STREAMS ({self.max_streams}) must be less than DAN_MAX_CONNECTIONS "
                f"({self.max_connections}): every open stream holds a connection"
            )
        if self.gpu_fp16 and self.provider != "tensorrt":
            raise ValueError(
                "DAN_GPU_FP16 needs DAN_PROVIDER=tensorrt (the CUDA provider runs the fp32 graph "
                f"as it is), got DAN_PROVIDER={self.provider}"
            )
        self._align_keys = _keys("DAN_API_KEYS", self.api_keys, self.api_keys_file)
        self._metrics_keys = _keys(
            "DAN_METRICS_API_KEYS", self.metrics_api_keys, self.metrics_api_keys_file
        )
        known = {ENV_PREFIX + name.upper() for name in type(self).model_fields}
        unknown = sorted(
            k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known
        )
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)} in the environment; known: "
                f"{', '.join(sorted(known))}"
            )
        return self

    def batch_size_for(self, gpu: bool) -> int:
        """The largest batch: the setting, or the default of the device kind."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return DEFAULT_MAX_BATCH_GPU if gpu else DEFAULT_MAX_BATCH_CPU

    @property
    def cpu_thread_count(self) -> int:
        return self.cpu_threads or os.cpu_count() or 1

    @property
    def align_keys(self) -> frozenset[str]:
        """The keys /align requires (empty: open), from DAN_API_KEYS and DAN_API_KEYS_FILE."""
        return self._align_keys

    @property
    def metrics_keys(self) -> frozenset[str]:
        """The keys /metrics requires (empty: open)."""
        return self._metrics_keys


def _keys(variable: str, listed: SecretStr, file: Path | None) -> frozenset[str]:
    """The keys of a comma-separated setting and its file (one a line, '#' comments), each
    checked; a message never shows a key."""
    keys = [k.strip() for k in listed.get_secret_value().split(",") if k.strip()]
    where = [f"{variable}"] * len(keys)
    if file is not None:
        found = [
            line.split("#", 1)[0].strip()
            for line in file.read_text(encoding="utf-8", errors="replace").splitlines()
        ]
        found = [k for k in found if k]
        if not found:
            raise ValueError(f"{variable}_FILE: {file} holds no key (one per line expected)")
        keys += found
        where += [f"{variable}_FILE"] * len(found)
    for number, (key, source) in enumerate(zip(keys, where, strict=True), start=1):
        if len(key) < MIN_API_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
            raise ValueError(
                f"{source}: key {number} must be at least {MIN_API_KEY_LENGTH} visible ASCII "
                "characters without spaces or commas (e.g. openssl rand -hex 32); it is not "
                "shown here"
            )
    return frozenset(keys)


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """A pydantic ValidationError's errors as lines naming the environment variables."""
    lines = []
    for error in errors:
        loc = error.get("loc") or ()
        name = ENV_PREFIX + str(loc[0]).upper() if loc else "settings"
        given = error.get("input")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        secret = name.removeprefix(ENV_PREFIX).lower() in SECRET_SETTINGS
        quiet = secret or isinstance(given, dict) or given is None or str(given) in message
        shown = "" if quiet else f" (got {given!r})"
        lines.append(f"{name}: {message}{shown}")
    return "\n".join(lines)
