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

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DAN_"
# The released model ships inside the ``model`` package, next to this one.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "model" / "dan-300w.onnx"

Provider = Literal["auto", "cpu", "cuda", "tensorrt"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]

# Default largest batch per kind of device: a 2-core CPU gains nothing beyond a few faces per
# run, a GPU keeps gaining up to a few dozen.
DEFAULT_MAX_BATCH_CPU = 8
DEFAULT_MAX_BATCH_GPU = 32


class Settings(BaseSettings):
    """Everything an operator can set, with its environment variable ``DAN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # The model.
    model_path: Path = Field(
        DEFAULT_MODEL_PATH,
        description="ONNX file written by training.export (default: the bundled model/dan-300w.onnx)",
    )
    # Execution.
    provider: Provider = Field(
        "auto",
        description=(
            "auto: CUDA when onnxruntime offers it, else CPU; cpu; cuda (fail if absent); "
            "tensorrt (TensorRT, CUDA for what it cannot run)"
        ),
    )
    cpu_threads: int = Field(0, ge=0, le=256, description="CPU provider threads; 0 = all cores")
    cuda_device_id: int = Field(0, ge=0, le=63, description="GPU used by cuda / tensorrt")
    gpu_fp16: bool = Field(False, description="fp16 kernels; needs provider tensorrt")
    io_binding: bool | None = Field(
        None, description="bind inputs and outputs to device buffers; default: on for GPUs"
    )
    # The batching queue.
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description=(
            f"faces per inference run; default {DEFAULT_MAX_BATCH_CPU} on CPU, "
            f"{DEFAULT_MAX_BATCH_GPU} on GPU"
        ),
    )
    max_wait_ms: float = Field(
        2.0, ge=0.0, le=1000.0, description="longest a face waits for others to fill its batch"
    )
    max_queue_size: int = Field(
        64, ge=1, le=100_000, description="faces waiting for inference; beyond it: 503"
    )
    max_pending_requests: int = Field(
        128, ge=1, le=100_000, description="/align requests in progress; beyond it: 503"
    )
    request_deadline_ms: float = Field(
        10_000.0, gt=0.0, le=600_000.0, description="a request not answered by then gets 504"
    )
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After of 503 answers")
    # Uploads.
    max_image_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=1024**3, description="largest encoded image (413 beyond)"
    )
    max_image_pixels: int = Field(
        40_000_000, ge=64, le=150_000_000, description="largest width x height (413 beyond)"
    )
    max_faces: int = Field(
        32, ge=1, le=10_000, description="most boxes in one request (422 beyond)"
    )
    decode_threads: int = Field(
        2, ge=1, le=256, description="threads that decode and crop images"
    )
    # Start-up and shutdown.
    warmup_runs: int = Field(
        2, ge=1, le=100_000, description="full-batch runs before the service reports ready"
    )
    shutdown_timeout_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="longest wait for requests in flight on SIGTERM"
    )
    # HTTP server.
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on")
    log_level: LogLevel = Field("info", description="critical, error, warning, info or debug")
    access_log: bool = Field(False, description="one log line per request (uvicorn access log)")

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
                f"max_faces ({self.max_faces}) must be at most max_queue_size "
                f"({self.max_queue_size}): a request with that many faces could never be queued"
            )
        if self.gpu_fp16 and self.provider != "tensorrt":
            raise ValueError(
                f"gpu_fp16 needs provider 'tensorrt' (the CUDA provider runs the fp32 graph as "
                f"it is), got provider {self.provider!r}"
            )
        known = {ENV_PREFIX + name.upper() for name in type(self).model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
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


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """A pydantic ValidationError's errors as lines naming the environment variables."""
    lines = []
    for error in errors:
        loc = error.get("loc") or ()
        name = ENV_PREFIX + str(loc[0]).upper() if loc else "settings"
        given = error.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        lines.append(f"{name}: {error.get('msg', 'invalid')}{shown}")
    return "\n".join(lines)
