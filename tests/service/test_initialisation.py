"""service.initialisation: requested boxes, the paper's box-less procedure, detector plug-in."""

from __future__ import annotations

import numpy as np
import pytest

from model.geometry import bounding_box
from service.detectors.calibration import BoxMapping
from service.detectors.interface import Detection, Detections, FaceDetector
from service.errors import InvalidBoxesError
from service.initialisation import (
    DetectorBoxes,
    FaceProposal,
    GivenBoxes,
    Initialiser,
    WholeImage,
)

IMAGE = np.zeros((100, 200), dtype=np.uint8)  # height 100, width 200


def test_whole_image_starts_from_a_centred_square_of_46_percent_of_the_height() -> None:
    (proposal,) = WholeImage().propose(IMAGE)
    x0, y0, x1, y1 = proposal.box
    assert proposal.source == "whole_image"
    assert x1 - x0 == pytest.approx(46.0) and y1 - y0 == pytest.approx(46.0)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((99.5, 49.5))


def test_whole_image_refits_once_to_the_first_result() -> None:
    strategy: Initialiser = WholeImage()
    (first,) = strategy.propose(IMAGE)
    landmarks = np.random.default_rng(0).uniform([60, 20], [140, 90], size=(68, 2))
    second = strategy.refine(first, landmarks, passes_done=1)
    assert second is not None and second.source == "whole_image"
    assert np.array_equal(second.box, bounding_box(landmarks))
    assert strategy.refine(second, landmarks, passes_done=2) is None


def test_given_boxes_take_one_pass() -> None:
    strategy = GivenBoxes([[10, 20, 60, 80], [-20, -10, 30, 40]], width=200, height=100)
    proposals = strategy.propose(IMAGE)
    assert [p.source for p in proposals] == ["request", "request"]
    assert np.array_equal(proposals[1].box, [-20, -10, 30, 40])  # past the edge is fine
    assert strategy.refine(proposals[0], np.zeros((68, 2)), passes_done=1) is None


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([60, 20, 10, 80], "x_max - x_min and y_max - y_min at least 1 px"),
        ([10, 20, 10.5, 80], "at least 1 px"),
        ([10, 80, 60, 20], "at least 1 px"),
        ([300, 20, 400, 80], "lies outside the 200 x 100 image"),
        ([-90, -90, -1, -1], "lies outside"),
        ([0, 0, 900, 50], "at most 4 x the image's larger side"),
        ([0, 0, float("nan"), 50], "4 finite numbers"),
        ([0, 0, 50], "4 finite numbers"),
    ],
)
def test_bad_boxes_are_refused_saying_why(box: list[float], message: str) -> None:
    with pytest.raises(InvalidBoxesError, match=message):
        GivenBoxes([[10, 10, 50, 50], box], width=200, height=100)


class FixedDetector:
    """A detector that reports the faces it was built with (the protocol's smallest form)."""

    def __init__(self, detections: list[Detection], box_mapping: BoxMapping | None = None) -> None:
        self.detections = detections
        self.box_mapping = box_mapping or BoxMapping()

    def detect(self, image: np.ndarray) -> Detections:
        return Detections(list(self.detections), seconds=0.25)


def test_detector_boxes_best_first_above_the_minimum_score_capped() -> None:
    keypoints = np.array([[30.0, 40.0], [50.0, 40.0]])
    detector = FixedDetector(
        [
            Detection(np.array([0.0, 0, 10, 10]), 0.3),
            Detection(np.array([20.0, 20, 60, 60]), 0.9, keypoints),
            Detection(np.array([100.0, 20, 140, 60]), 0.6),
            Detection(np.array([150.0, 20, 190, 60]), 0.05),
        ]
    )
    proposals: list[FaceProposal] = DetectorBoxes(detector, max_faces=2, min_score=0.1).propose(
        IMAGE
    )
    assert [p.score for p in proposals] == [0.9, 0.6]
    assert all(p.source == "detector" for p in proposals)
    assert proposals[0].keypoints is keypoints


def test_detector_boxes_drop_small_faces_and_map_boxes_by_the_detectors_calibration() -> None:
    detections = [
        Detection(np.array([20.0, 10, 60, 70]), 0.9),  # 40 x 60
        Detection(np.array([100.0, 20, 119, 60]), 0.8),  # 19 px wide: too small
    ]
    mapping = BoxMapping(dx=0.1, dy=0.25, sw=0.5, sh=0.5)
    detector: FaceDetector = FixedDetector(detections, box_mapping=mapping)
    (proposal,), seconds = DetectorBoxes(detector, max_faces=5, min_size=20.0).propose_timed(IMAGE)
    assert seconds == 0.25  # the detector's own
    # Centre (40, 40) moves by (0.1 * 40, 0.25 * 60) = (4, 15); sides halve to 20 x 30.
    assert proposal.box == pytest.approx([34.0, 40.0, 54.0, 70.0])
    assert proposal.crop_from == "box"


def test_detector_boxes_crop_from_keypoints_only_where_the_detector_gives_them() -> None:
    keypoints = np.array([[30.0, 30], [50, 30], [40, 40], [32, 50], [48, 50]])
    detector = FixedDetector(
        [
            Detection(np.array([20.0, 20, 60, 60]), 0.9, keypoints),
            Detection(np.array([100.0, 20, 140, 60]), 0.8),
        ]
    )
    with_points, without = DetectorBoxes(detector, max_faces=5, crop_from="keypoints").propose(
        IMAGE
    )
    assert with_points.crop_from == "keypoints"
    assert np.array_equal(with_points.keypoints, keypoints)  # type: ignore[arg-type]
    assert without.crop_from == "box"


def test_detector_boxes_refuse_a_negative_minimum_size() -> None:
    with pytest.raises(ValueError, match="min_size must be >= 0"):
        DetectorBoxes(FixedDetector([]), max_faces=1, min_size=-1.0)


def test_no_detected_face_proposes_nothing() -> None:
    assert DetectorBoxes(FixedDetector([]), max_faces=3).propose(IMAGE) == []
