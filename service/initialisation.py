"""Where the faces are: initialisation strategies behind one small interface.

A strategy proposes face boxes for an image and may ask for another pass from
a box re-fitted to a pass's landmarks. Three kinds of source exist:

- ``request``: the client's boxes (``GivenBoxes``), one pass;
- ``whole_image``: no box at all (``WholeImage``), the paper's procedure: a
  square box centred in the image with side 46% of the image height, then a
  second pass from the bounding box of the first pass's landmarks;
- ``detector``: a face detector's boxes with scores and optional keypoints
  (``DetectorBoxes`` over any ``service.detectors.interface.FaceDetector``),
  one pass. Faces come best score first; each box is mapped to the model's box
  convention (the 300-W detector boxes) by the detector's own calibration
  before the crop, or the crop is fitted to the detector's eye, nose and mouth
  keypoints. The detector times itself; ``DetectorBoxes.propose_timed`` passes
  its seconds on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from model.arrays import FloatArray, GrayImage
from model.geometry import bounding_box
from service.detectors.interface import FaceDetector
from service.errors import InvalidBoxesError

# track: a stream's face followed from the previous frame's landmarks (service.tracking).
BoxSource = Literal["request", "detector", "whole_image", "track"]
CropFrom = Literal["box", "keypoints"]

# Kowalski et al. (2017), box-less images: side of the centred square box / image height.
WHOLE_IMAGE_BOX_FRACTION = 0.46
# A requested box may be at most this many times the image's larger side.
MAX_BOX_SIDE_FACTOR = 4.0
MIN_BOX_SIDE = 1.0


@dataclass(frozen=True)
class FaceProposal:
    """A face box [x_min, y_min, x_max, y_max] in image pixels, and where it came from."""

    box: FloatArray  # (4,)
    source: BoxSource
    score: float | None = None  # detector confidence
    keypoints: FloatArray | None = None  # (K, 2) detector keypoints, detector-specific order
    crop_from: CropFrom = "box"  # keypoints: fit the crop to the 5 keypoints, not the box


class Initialiser(Protocol):
    """A strategy that says where faces are, for one image."""

    def propose(self, image: GrayImage) -> list[FaceProposal]:
        """Face proposals for a grayscale image (H, W) in its displayed orientation."""
        ...

    def refine(
        self, proposal: FaceProposal, landmarks: FloatArray, passes_done: int
    ) -> FaceProposal | None:
        """The proposal for one more pass after ``passes_done`` passes, or None when done."""
        ...


class GivenBoxes:
    """The client's boxes, checked against the image; one pass each."""

    def __init__(self, boxes: Sequence[Sequence[float]], width: int, height: int) -> None:
        self.boxes = [check_box(i, box, width, height) for i, box in enumerate(boxes)]

    def propose(self, image: GrayImage) -> list[FaceProposal]:
        return [FaceProposal(box, "request") for box in self.boxes]

    def refine(
        self, proposal: FaceProposal, landmarks: FloatArray, passes_done: int
    ) -> FaceProposal | None:
        return None


class WholeImage:
    """No box: a centred square of side ``fraction`` x image height, then refits (see module)."""

    def __init__(self, fraction: float = WHOLE_IMAGE_BOX_FRACTION, passes: int = 2) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        self.fraction = fraction
        self.passes = passes

    def propose(self, image: GrayImage) -> list[FaceProposal]:
        height, width = image.shape[:2]
        half = self.fraction * height / 2.0
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        box = np.array([cx - half, cy - half, cx + half, cy + half])
        return [FaceProposal(box, "whole_image")]

    def refine(
        self, proposal: FaceProposal, landmarks: FloatArray, passes_done: int
    ) -> FaceProposal | None:
        if passes_done >= self.passes:
            return None
        box = bounding_box(landmarks)
        if not (box[2] - box[0] >= MIN_BOX_SIDE and box[3] - box[1] >= MIN_BOX_SIDE):
            return None  # a degenerate result cannot seed another pass
        return FaceProposal(box, "whole_image")


class DetectorBoxes:
    """A face detector's faces, best first: at most ``max_faces`` of at least ``min_score``.

    Faces whose box is smaller than ``min_size`` px (shorter side, before the
    mapping) are dropped. Each box is mapped by the detector's calibration
    (``detector.box_mapping``) to the model's box convention; with
    ``crop_from="keypoints"`` the crop is fitted to the detector's five
    keypoints instead, where the detector gives them.
    """

    def __init__(
        self,
        detector: FaceDetector,
        max_faces: int,
        min_score: float = 0.0,
        min_size: float = 0.0,
        crop_from: CropFrom = "box",
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size}")
        self.detector = detector
        self.max_faces = max_faces
        self.min_score = min_score
        self.min_size = min_size
        self.crop_from: CropFrom = crop_from

    def propose(self, image: GrayImage) -> list[FaceProposal]:
        return self.propose_timed(image)[0]

    def propose_timed(self, image: GrayImage) -> tuple[list[FaceProposal], float]:
        """The proposals, and the seconds the detector says it took to find them."""
        detections = self.detector.detect(image)
        mapping = self.detector.box_mapping
        found = [
            d
            for d in detections.faces
            if d.score >= self.min_score
            and min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= self.min_size
        ]
        found.sort(key=lambda d: d.score, reverse=True)
        proposals = [
            FaceProposal(
                mapping.apply(np.asarray(d.box, dtype=np.float64)),
                "detector",
                d.score,
                d.keypoints,
                "keypoints" if self.crop_from == "keypoints" and d.keypoints is not None else "box",
            )
            for d in found[: self.max_faces]
        ]
        return proposals, detections.seconds

    def refine(
        self, proposal: FaceProposal, landmarks: FloatArray, passes_done: int
    ) -> FaceProposal | None:
        return None


def check_box(index: int, box: Sequence[float], width: int, height: int) -> FloatArray:
    """A requested box as an array, or ``InvalidBoxesError`` saying what is wrong with it.

    A box must have positive size (at least 1 px a side, at most 4x the image's
    larger side) and overlap the image; it may extend past the image's edges.
    """
    values = np.asarray(box, dtype=np.float64)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise InvalidBoxesError(f"box {index}: expected 4 finite numbers, got {list(box)}")
    x0, y0, x1, y1 = (float(v) for v in values)
    shown = f"box {index} [{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
    if not (x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE):
        raise InvalidBoxesError(
            f"{shown}: expected [x_min, y_min, x_max, y_max] with x_max - x_min and "
            f"y_max - y_min at least {MIN_BOX_SIDE:g} px"
        )
    limit = MAX_BOX_SIDE_FACTOR * max(width, height)
    if x1 - x0 > limit or y1 - y0 > limit:
        raise InvalidBoxesError(
            f"{shown}: sides may be at most {MAX_BOX_SIDE_FACTOR:g} x the image's larger side "
            f"({limit:g} px for this {width} x {height} image)"
        )
    if x1 <= -0.5 or y1 <= -0.5 or x0 >= width - 0.5 or y0 >= height - 0.5:
        raise InvalidBoxesError(f"{shown} lies outside the {width} x {height} image")
    return values
