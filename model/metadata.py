"""The ``dan.*`` metadata of an exported model: its keys, the one writer and the one reader.

An exported ONNX file describes itself in its ``metadata_props`` (string
keys and values): name and version, the input and output names, the input
size, the mean shape the crop is built on (``model.crop``), the grayscale
rule (``model.grayscale``), the box convention, the network's configuration,
its measured accuracy, its licence, and, for a model with a confidence head
(``training.confidence``), what its ``confidence`` output means and its
default threshold (``ConfidenceInfo``), and for a quantized or float16 file its
precision, calibration and measured drift (``training.quantize``,
``training.fp16``). ``ModelMetadata.to_onnx_props`` writes
them (``training.export``, ``training.evaluate --write-metadata``) and
``ModelMetadata.from_onnx_props`` reads and checks them (``training.evaluate``,
``service.engine``, the benchmarks and tests), from an onnxruntime session's
``custom_metadata_map`` or an ONNX proto (``onnx_props``). numpy only (no
torch, no onnx).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model.arrays import FloatArray
from model.landmarks import NUM_LANDMARKS, SCHEME

FORMAT_VERSION = "1"
SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)
INPUT_NAME = "images"  # float32 (B, 1, S, S)
OUTPUT_NAME = "landmarks"  # (B, N, 2): the last stage's landmarks in crop pixels
STAGE_OUTPUT_NAME = "stage_landmarks"  # (B, stages, N, 2): every stage's
CONFIDENCE_OUTPUT_NAME = "confidence"  # (B,) in [0, 1], only in models with a confidence head
CONFIDENCE_MEANING = (
    "Estimated probability that the landmarks of this crop are right (the face is there and its "
    "inter-ocular normalised error is small); low for bad alignments and for crops without a face. "
    "Faces below threshold are flagged low_confidence."
)
MIN_INPUT_SIZE = 8
DEFAULT_PRECISION = "float32"  # a file without dan.precision
MEAN_SHAPE_DECIMALS = 6
INPUT_FORMAT = "float32 (B, 1, S, S), grayscale = mean of R, G, B, range 0-255"
COORDINATES = "pixels, centre of the top-left pixel at (0, 0)"
BOX_CONVENTION: dict[str, str] = {
    "name": "dan-box",
    "description": (
        "Initial shape = mean_shape scaled by mean(box_w / shape_w, box_h / shape_h), not rotated, "
        "its bounding box centred on the box centre; the crop is the image resampled (bilinear, "
        "edge replicated) by the least-squares similarity taking the initial shape onto mean_shape; "
        "landmarks map back by the inverse of that similarity."
    ),
    "box_format": "[x_min, y_min, x_max, y_max], pixel centres 0-based",
    "trained_with": "boxes around the ground-truth landmarks, perturbed",
    "evaluated_with": "300-W detector boxes (boxes.csv)",
}

# Each field of ModelMetadata and its key in metadata_props, in the order they are written.
KEYS: dict[str, str] = {
    "format_version": "dan.format_version",
    "name": "dan.model_name",
    "version": "dan.model_version",
    "landmark_scheme": "dan.landmark_scheme",
    "num_landmarks": "dan.num_landmarks",
    "input_size": "dan.input_size",
    "input_name": "dan.input_name",
    "output_name": "dan.output_name",
    "input_format": "dan.input_format",
    "coordinates": "dan.coordinates",
    "mean_shape": "dan.mean_shape",
    "box_convention": "dan.box_convention",
    "num_stages": "dan.num_stages",
    "config": "dan.config",
    "training_data": "dan.training_data",
    "accuracy": "dan.accuracy",
    "weights_dtype": "dan.weights_dtype",
    "licence": "dan.licence",
    "confidence": "dan.confidence",
    "precision": "dan.precision",
    "calibration": "dan.calibration",
    "drift": "dan.drift",
}
REQUIRED_KEYS = tuple(
    KEYS[name]
    for name in (
        "format_version",
        "name",
        "version",
        "landmark_scheme",
        "num_landmarks",
        "input_size",
        "input_name",
        "output_name",
        "mean_shape",
    )
)


class MetadataError(ValueError):
    """A model file's ``dan.*`` metadata is missing, of an unknown format, or inconsistent."""


@dataclass(frozen=True)
class ConfidenceInfo:
    """What a model's confidence output is (``dan.confidence``, a JSON object).

    ``threshold`` is the default least confidence of a face the service keeps unflagged
    (``DAN_MIN_CONFIDENCE``); ``method``, ``trained_on`` and ``measured`` describe how the head
    was made and what it scored (``training.confidence``, ``bench.confidence``).
    """

    threshold: float
    output_name: str = CONFIDENCE_OUTPUT_NAME
    meaning: str = CONFIDENCE_MEANING
    method: str = ""
    trained_on: str = ""
    measured: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"the confidence threshold must be in [0, 1], got {self.threshold}")
        if not self.output_name:
            raise ValueError("the confidence output needs a name")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, text: str, source: str | Path = "the model") -> ConfidenceInfo:
        """Parse ``dan.confidence``; ``MetadataError`` says what is wrong (the service needs it)."""
        key = KEYS["confidence"]
        try:
            value = json.loads(text)
        except ValueError as e:
            raise MetadataError(f"{source}: {key} is not JSON: {e}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(value, dict) or "threshold" not in value:
            raise MetadataError(
                f"{source}: {key} must be a JSON object with a threshold in [0, 1] and the keys "
                f"{', '.join(sorted(known))}"
            )
        threshold = value["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise MetadataError(f"{source}: {key} threshold must be a number, got {threshold!r}")
        output_name = value.get("output_name", CONFIDENCE_OUTPUT_NAME)
        if not isinstance(output_name, str):
            raise MetadataError(f"{source}: {key} output_name must be a string")
        measured = value.get("measured")
        try:
            return cls(
                threshold=float(threshold),
                output_name=output_name,
                meaning=str(value.get("meaning", CONFIDENCE_MEANING)),
                method=str(value.get("method", "")),
                trained_on=str(value.get("trained_on", "")),
                measured=measured if isinstance(measured, dict) else {},
            )
        except ValueError as e:
            raise MetadataError(f"{source}: {key}: {e}") from None


@dataclass(frozen=True, eq=False)
class ModelMetadata:
    """What an exported model says about itself (its ``dan.*`` metadata, parsed)."""

    name: str
    version: str
    input_size: int  # S: crops are (S, S)
    mean_shape: FloatArray  # (num_landmarks, 2) in crop pixels
    num_landmarks: int = NUM_LANDMARKS
    landmark_scheme: str = SCHEME
    format_version: str = FORMAT_VERSION
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    input_format: str = INPUT_FORMAT
    coordinates: str = COORDINATES
    box_convention: dict[str, Any] = field(default_factory=lambda: dict(BOX_CONVENTION))
    num_stages: int | None = None
    config: dict[str, Any] | None = None  # model.config.DANConfig.to_dict()
    training_data: str | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)  # split -> evaluation summary
    weights_dtype: str | None = None
    licence: str | None = None
    confidence: ConfidenceInfo | None = None  # None: the model has no confidence output
    # The arithmetic of the graph (None: float32): "int8" for training.quantize's files, "float16"
    # for training.fp16's; with how it was calibrated and its measured drift from the fp32 file.
    precision: str | None = None
    calibration: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None

    def to_onnx_props(self) -> dict[str, str]:
        """The ``dan.*`` entries of ``metadata_props`` (fields that are None are left out)."""
        props: dict[str, str] = {}
        for name, key in KEYS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "mean_shape":
                rounded = np.round(np.asarray(value, dtype=np.float64), MEAN_SHAPE_DECIMALS)
                props[key] = json.dumps(rounded.tolist())
            elif name == "config":
                props[key] = json.dumps(value, sort_keys=True)
            elif isinstance(value, ConfidenceInfo):
                props[key] = json.dumps(value.to_dict())
            elif isinstance(value, dict):
                props[key] = json.dumps(value)
            else:
                props[key] = str(value)
        return props

    @classmethod
    def from_onnx_props(
        cls, props: Mapping[str, str], source: str | Path = "the model"
    ) -> ModelMetadata:
        """Parse and check ``dan.*`` entries; ``MetadataError`` names ``source`` and the problem."""
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise MetadataError(
                f"{source} lacks the metadata {', '.join(missing)}: expected an ONNX file written "
                f"by training.export, with the keys {', '.join(REQUIRED_KEYS)} in metadata_props"
            )
        version = props[KEYS["format_version"]]
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise MetadataError(
                f"{source} has dan.format_version {version!r}; dan-align reads format "
                f"version(s) {', '.join(SUPPORTED_FORMAT_VERSIONS)}"
            )
        scheme = props[KEYS["landmark_scheme"]]
        num_landmarks = _int(props, "num_landmarks", source)
        if scheme != SCHEME or num_landmarks != NUM_LANDMARKS:
            raise MetadataError(
                f"{source} predicts {num_landmarks} landmarks of scheme {scheme!r}; dan-align "
                f"reads {NUM_LANDMARKS} landmarks of scheme {SCHEME!r}"
            )
        input_size = _int(props, "input_size", source)
        if input_size < MIN_INPUT_SIZE:
            raise MetadataError(
                f"{source}: dan.input_size must be at least {MIN_INPUT_SIZE} px, got {input_size}"
            )
        try:
            mean_shape = np.asarray(json.loads(props[KEYS["mean_shape"]]), dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise MetadataError(
                f"{source}: dan.mean_shape is not a JSON list of [x, y] pairs: {e}"
            ) from None
        if mean_shape.shape != (num_landmarks, 2) or not np.all(np.isfinite(mean_shape)):
            raise MetadataError(
                f"{source}: dan.mean_shape must be {num_landmarks} finite [x, y] pairs, got an "
                f"array of shape {mean_shape.shape}"
            )
        return cls(
            name=props[KEYS["name"]],
            version=props[KEYS["version"]],
            input_size=input_size,
            mean_shape=mean_shape,
            num_landmarks=num_landmarks,
            landmark_scheme=scheme,
            format_version=version,
            input_name=props[KEYS["input_name"]],
            output_name=props[KEYS["output_name"]],
            input_format=props.get(KEYS["input_format"], INPUT_FORMAT),
            coordinates=props.get(KEYS["coordinates"], COORDINATES),
            box_convention=_json_object(props, "box_convention") or dict(BOX_CONVENTION),
            num_stages=_int(props, "num_stages", source) if KEYS["num_stages"] in props else None,
            config=_json_object(props, "config"),
            training_data=props.get(KEYS["training_data"]),
            accuracy=_json_object(props, "accuracy") or {},
            weights_dtype=props.get(KEYS["weights_dtype"]),
            licence=props.get(KEYS["licence"]),
            confidence=(
                ConfidenceInfo.from_json(props[KEYS["confidence"]], source)
                if KEYS["confidence"] in props
                else None
            ),
            precision=props.get(KEYS["precision"]),
            calibration=_json_object(props, "calibration"),
            drift=_json_object(props, "drift"),
        )

    @property
    def compute_precision(self) -> str:
        """The arithmetic the graph runs in: ``dan.precision``, else float32."""
        return self.precision or DEFAULT_PRECISION

    def field_values(self) -> dict[str, Any]:
        """Every field by name (unlike ``dataclasses.asdict``, values are not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _int(props: Mapping[str, str], name: str, source: str | Path) -> int:
    key = KEYS[name]
    try:
        return int(props[key])
    except ValueError:
        raise MetadataError(f"{source}: {key} must be an integer, got {props[key]!r}") from None


def _json_object(props: Mapping[str, str], name: str) -> dict[str, Any] | None:
    """A descriptive JSON object entry; None when absent or unreadable (it never stops a model)."""
    text = props.get(KEYS[name])
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class OnnxProto(Protocol):
    """What ``onnx_props`` and ``set_onnx_props`` need of an ``onnx.ModelProto``."""

    @property
    def metadata_props(self) -> Any: ...


def onnx_props(proto: OnnxProto) -> dict[str, str]:
    """Every entry of an ONNX proto's ``metadata_props``."""
    return {entry.key: entry.value for entry in proto.metadata_props}


def set_onnx_props(proto: OnnxProto, props: Mapping[str, str]) -> None:
    """Set (replace) entries of an ONNX proto's ``metadata_props`` in memory, keeping the others."""
    entries = proto.metadata_props
    kept = [(entry.key, entry.value) for entry in entries if entry.key not in props]
    del entries[:]
    for key, value in [*kept, *props.items()]:
        entries.add(key=key, value=value)
