"""Typed results of ``POST /align``: frozen dataclasses built from the service's JSON answer.

Landmarks and boxes are numpy arrays in pixels of the image as displayed (EXIF
orientation applied), the centre of the top-left pixel at (0, 0). Fields that
not every version of the service sends (``confidence``, ``status``, ``pose``,
``timings``, and ``track_id``, which only stream answers have) are ``None`` when
absent; anything else a newer service adds is kept in ``Face.extra`` and, for the
whole answer, in ``Alignment.raw``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dan_align.errors import ResponseFormatError
from model.arrays import FloatArray
from model.landmarks import NUM_LANDMARKS

_FACE_FIELDS = frozenset(
    {
        "box",
        "box_source",
        "score",
        "landmarks",
        "confidence",
        "status",
        "pose",
        "timings",
        "track_id",
    }
)


@dataclass(frozen=True)
class ImageSize:
    width: int
    height: int


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class Timings:
    """Where the service spent the time, in milliseconds (``detect_ms``: None without detection)."""

    decode_ms: float
    detect_ms: float | None
    queue_wait_ms: float
    inference_ms: float
    total_ms: float


@dataclass(frozen=True, eq=False)
class Face:
    """One face: its box ``[x_min, y_min, x_max, y_max]`` and 68 landmarks ``(68, 2)``."""

    box: FloatArray
    box_source: str
    landmarks: FloatArray
    score: float | None = None
    confidence: float | None = None
    status: str | None = None
    pose: Pose | None = None
    timings: Timings | None = None
    track_id: int | None = None  # a stream's face (GET /align/stream): the same while followed
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Alignment:
    """The answer to one image: its size, the model that answered and the faces, in order."""

    image: ImageSize
    model: ModelRef
    faces: tuple[Face, ...]
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def landmarks(self) -> FloatArray:
        """All faces' landmarks stacked: ``(faces, 68, 2)``."""
        if not self.faces:
            return np.zeros((0, NUM_LANDMARKS, 2))
        return np.stack([f.landmarks for f in self.faces])


def parse_alignment(body: Any) -> Alignment:
    """The typed ``Alignment`` of an ``/align`` JSON answer (a parsed JSON object)."""
    try:
        image = body["image"]
        model = body["model"]
        faces = tuple(_parse_face(face) for face in body["faces"])
        return Alignment(
            image=ImageSize(width=int(image["width"]), height=int(image["height"])),
            model=ModelRef(name=str(model["name"]), version=str(model["version"])),
            faces=faces,
            raw=body,
        )
    except ResponseFormatError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ResponseFormatError(f"not an /align answer ({type(e).__name__}: {e})") from e


def _parse_face(face: Mapping[str, Any]) -> Face:
    landmarks = np.asarray(face["landmarks"], dtype=np.float64)
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ResponseFormatError(
            f"expected {NUM_LANDMARKS} [x, y] landmarks per face, got shape {landmarks.shape}"
        )
    box = np.asarray(face["box"], dtype=np.float64)
    if box.shape != (4,):
        raise ResponseFormatError(f"expected a box of 4 numbers, got shape {box.shape}")
    return Face(
        box=box,
        box_source=str(face.get("box_source", "")),
        landmarks=landmarks,
        score=_optional_float(face.get("score")),
        confidence=_optional_float(face.get("confidence")),
        status=None if face.get("status") is None else str(face["status"]),
        pose=_parse_pose(face.get("pose")),
        timings=_parse_timings(face.get("timings")),
        track_id=None if face.get("track_id") is None else int(face["track_id"]),
        extra={k: v for k, v in face.items() if k not in _FACE_FIELDS},
    )


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _parse_pose(pose: Any) -> Pose | None:
    if pose is None:
        return None
    if isinstance(pose, Mapping):
        return Pose(yaw=float(pose["yaw"]), pitch=float(pose["pitch"]), roll=float(pose["roll"]))
    if isinstance(pose, Sequence) and len(pose) == 3:
        yaw, pitch, roll = (float(v) for v in pose)
        return Pose(yaw=yaw, pitch=pitch, roll=roll)
    raise ResponseFormatError(f"expected pose {{yaw, pitch, roll}}, got {pose!r}")


def _parse_timings(timings: Any) -> Timings | None:
    if timings is None:
        return None
    return Timings(
        decode_ms=float(timings["decode_ms"]),
        detect_ms=_optional_float(timings.get("detect_ms")),
        queue_wait_ms=float(timings["queue_wait_ms"]),
        inference_ms=float(timings["inference_ms"]),
        total_ms=float(timings["total_ms"]),
    )
