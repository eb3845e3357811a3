"""What a face detector is to the service: its detections, their timing, its calibration.

A detector finds faces in a grayscale image and says how long that took
(``Detections.seconds``: the service reports it as ``timings.detect_ms`` and in
``dan_detection_duration_seconds``, without timing the detector from outside).
It also carries its calibration (``box_mapping``): the mapping from its boxes to
the model's box convention, which it loads as data (``service.detectors.calibration``).

This module imports nothing of the service beyond the calibration, so
``service.initialisation`` builds on it and nothing here imports that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from model.arrays import FloatArray, GrayImage
from service.detectors.calibration import BoxMapping


@dataclass(frozen=True)
class Detection:
    """One face found by a detector."""

    box: FloatArray  # (4,) [x_min, y_min, x_max, y_max] image pixels
    score: float
    keypoints: FloatArray | None = None  # (K, 2), detector-specific order


@dataclass(frozen=True)
class Detections:
    """A detector's faces in one image (any order) and the seconds it took to find them."""

    faces: list[Detection]
    seconds: float


class FaceDetector(Protocol):
    """A face detector (``service.detectors.centerface.CenterFace``)."""

    @property
    def box_mapping(self) -> BoxMapping:
        """This detector's boxes -> the model's box convention (its calibration)."""
        ...

    def detect(self, image: GrayImage) -> Detections:
        """Faces in a grayscale image (H, W), and the detector's own time for them."""
        ...
