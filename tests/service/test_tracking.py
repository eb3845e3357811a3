"""A stream's tracks without a server: matching, when the detector runs, when a face is lost,
the ids, and the options messages (``service.tracking``, ``service.streaming``)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from model.geometry import apply_affine, bounding_box
from service.errors import InvalidBoxesError, InvalidRequestError, TooManyFacesError
from service.initialisation import FaceProposal
from service.pipeline import AlignedFace
from service.smoothing import LandmarkSmoother, OneEuroParameters
from service.streaming import close_reason, parse_options
from service.tracking import (
    MIN_APPEARANCE_CORRELATION,
    StreamOptions,
    Track,
    Tracker,
    appearance_of,
    iou,
    match,
)

OPTIONS = StreamOptions(redetect_every=3, smoothing=True, max_faces=4)


def shape(x: float = 100.0, y: float = 100.0, iod: float = 60.0) -> np.ndarray:
    """A face-like set of 68 points: outer eye corners ``iod`` apart, around (x, y)."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.8, 0.8, (68, 2)) * iod + (x, y)
    points[36] = (x - iod / 2, y - iod / 4)
    points[45] = (x + iod / 2, y - iod / 4)
    return points


def aligned(points: np.ndarray, confidence: float | None = None) -> AlignedFace:
    return AlignedFace(FaceProposal(bounding_box(points), "detector"), points, 0.0, 0.0, confidence)


def tracker(min_confidence: float | None = None, has_detector: bool = True) -> Tracker:
    return Tracker(
        OPTIONS,
        min_confidence=min_confidence,
        min_face_px=20.0,
        smoothing=OneEuroParameters(),
        has_detector=has_detector,
    )


def test_iou_of_boxes() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, np.array([5.0, 0.0, 15.0, 10.0])) == pytest.approx(50 / 150)
    assert iou(a, np.array([20.0, 20.0, 30.0, 30.0])) == 0.0


def test_match_pairs_the_best_overlaps_once() -> None:
    known = [np.array([0.0, 0.0, 10.0, 10.0]), np.array([100.0, 0.0, 110.0, 10.0])]
    found = [
        np.array([101.0, 0.0, 111.0, 10.0]),  # the second
        np.array([50.0, 50.0, 60.0, 60.0]),  # neither
        np.array([1.0, 0.0, 11.0, 10.0]),  # the first
        np.array([2.0, 0.0, 12.0, 10.0]),  # the first again, worse: unmatched
    ]
    assert match(found, known) == {0: 1, 2: 0}


def test_the_prediction_goes_on_with_the_last_motion() -> None:
    start = shape()
    track = Track(1, start, LandmarkSmoother())
    np.testing.assert_array_equal(track.predicted(), start)  # no motion seen yet
    track.follow(start + np.array([5.0, 0.0]), None)
    np.testing.assert_allclose(track.predicted(), start + np.array([10.0, 0.0]), atol=1e-9)
    turn = np.array([[np.cos(0.1), -np.sin(0.1), 0.0], [np.sin(0.1), np.cos(0.1), 0.0]])
    track = Track(1, start, LandmarkSmoother())
    track.follow(apply_affine(turn, start), None)
    np.testing.assert_allclose(track.predicted(), apply_affine(turn, apply_affine(turn, start)))


def test_the_prediction_is_capped() -> None:
    start = shape(iod=60.0)
    track = Track(1, start, LandmarkSmoother())
    track.follow(start + np.array([200.0, 0.0]), None)  # a jump, not a motion to go on with
    shift = track.predicted().mean(axis=0) - track.landmarks.mean(axis=0)
    assert np.linalg.norm(shift) == pytest.approx(30.0)


def test_when_the_detector_runs() -> None:
    t = tracker()
    assert t.plan() == "first_frame"
    assert t.restart([aligned(shape())]) == [1]
    assert t.plan() is None
    for _ in range(2):
        t.advance([(t.tracks[0], aligned(shape()), None)], detected=False)
    assert t.plan() == "interval"  # every redetect_every = 3 frames
    t.advance([(t.tracks[0], aligned(shape()), None)], detected=True)
    assert t.plan() is None
    t.options = replace(t.options, boxes=((1.0, 2.0, 50.0, 60.0),))
    assert t.plan() == "boxes"
    assert t.take_boxes() == [[1.0, 2.0, 50.0, 60.0]]
    assert t.plan() is None  # the boxes are used once
    t.advance([], detected=False)
    assert t.plan() == "no_faces"


def test_without_a_detector_there_is_no_periodic_detection() -> None:
    t = tracker(has_detector=False)
    t.restart([aligned(shape())])
    for _ in range(10):
        t.advance([(t.tracks[0], aligned(shape()), None)], detected=False)
    assert t.plan() is None


def test_ids_follow_overlapping_faces_and_new_faces_get_new_ones() -> None:
    t = tracker()
    assert t.restart([aligned(shape(100, 100)), aligned(shape(400, 100))]) == [1, 2]
    # Re-found in the other order, one moved a little, and a third face: ids by overlap.
    ids = t.restart([aligned(shape(405, 100)), aligned(shape(700, 300)), aligned(shape(102, 101))])
    assert ids == [2, 3, 1]
    # A face that is gone ends; found again later, it is a new track.
    assert t.restart([aligned(shape(700, 300))]) == [3]
    assert t.restart([aligned(shape(700, 300)), aligned(shape(100, 100))]) == [3, 4]


def test_at_most_max_faces_are_followed() -> None:
    t = tracker()
    faces = [aligned(shape(100 + 200 * k, 100)) for k in range(6)]
    assert t.restart(faces) == [1, 2, 3, 4]


def test_a_face_is_lost_below_the_least_confidence() -> None:
    t = tracker(min_confidence=0.5)
    t.restart([aligned(shape())])
    track = t.tracks[0]
    assert t.lost(track, aligned(shape(), 0.9), None, 640, 480) is None
    assert t.lost(track, aligned(shape(), 0.2), None, 640, 480) == "low_confidence"


def test_without_confidence_a_face_that_looks_different_is_lost() -> None:
    rng = np.random.default_rng(3)
    mean_shape = shape(56.0, 56.0, 30.0)
    image = rng.integers(0, 255, (480, 640)).astype(np.uint8)
    image = np.asarray(np.kron(image[::8, ::8], np.ones((8, 8))), dtype=np.uint8)[:480, :640]
    points = shape(300, 200)
    look = appearance_of(image, points, mean_shape)
    assert float(look @ look) == pytest.approx(1.0)
    again = appearance_of(
        np.clip(image.astype(int) + 3, 0, 255).astype(np.uint8), points, mean_shape
    )
    assert float(look @ again) > MIN_APPEARANCE_CORRELATION
    blank = appearance_of(np.full_like(image, 128), points, mean_shape)
    assert float(look @ blank) == 0.0
    t = tracker()
    t.restart([aligned(points)])
    t.tracks[0].appearance = look
    face = aligned(points)
    assert t.lost(t.tracks[0], face, again, 640, 480) is None
    assert t.lost(t.tracks[0], face, blank, 640, 480) == "appearance"


def test_a_face_is_lost_off_the_image_too_small_or_jumping_in_size() -> None:
    t = tracker()
    t.restart([aligned(shape(100, 100, 60))])
    track = t.tracks[0]
    assert t.lost(track, aligned(shape(100, 100, 60)), None, 640, 480) is None
    assert t.lost(track, aligned(shape(-60, 100, 60)), None, 640, 480) == "left_image"
    assert t.lost(track, aligned(shape(100, 100, 12)), None, 640, 480) == "too_small"
    assert t.lost(track, aligned(shape(100, 100, 100)), None, 640, 480) == "scale_jump"


def test_smoothing_is_per_track_and_can_be_turned_off() -> None:
    t = tracker()
    ids = t.restart([aligned(shape())])
    first = t.smoothed(ids, [aligned(shape())])
    np.testing.assert_array_equal(first[0].landmarks, shape())  # the first frame as it is
    moved = aligned(shape() + 3.0)
    t.advance([(t.tracks[0], moved, None)], detected=False)
    smoothed = t.smoothed(ids, [moved])[0]
    assert smoothed.pose is None
    assert 0.0 < float((smoothed.landmarks - shape()).mean()) < 3.0
    t.options = replace(t.options, smoothing=False)
    np.testing.assert_array_equal(t.smoothed(ids, [moved])[0].landmarks, moved.landmarks)


def test_options_messages_set_the_options() -> None:
    got = parse_options(
        json.dumps({"redetect_every": 5, "smoothing": False, "max_faces": 2}), OPTIONS, 8
    )
    assert got == StreamOptions(redetect_every=5, smoothing=False, max_faces=2)
    boxes = parse_options(json.dumps({"boxes": [[1, 2, 30, 40.5]]}), OPTIONS, 8)
    assert boxes.boxes == ((1.0, 2.0, 30.0, 40.5),)
    assert parse_options(json.dumps({"boxes": None}), boxes, 8).boxes is None


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("frame please", InvalidRequestError, "must be a JSON object"),
        ("[1, 2]", InvalidRequestError, "must be a JSON object"),
        ("{}", InvalidRequestError, "one or more of boxes"),
        ('{"fps": 30}', InvalidRequestError, "unknown option(s) 'fps'"),
        ('{"redetect_every": 0}', InvalidRequestError, "redetect_every must be a whole number"),
        ('{"redetect_every": 2.5}', InvalidRequestError, "redetect_every must be a whole number"),
        ('{"max_faces": 9}', InvalidRequestError, "from 1 to 8 (DAN_MAX_FACES)"),
        ('{"max_faces": true}', InvalidRequestError, "max_faces must be a whole number"),
        ('{"smoothing": "yes"}', InvalidRequestError, 'smoothing must be true or false, got "yes"'),
        ('{"boxes": [[1, 2, 3]]}', InvalidBoxesError, "boxes must be a non-empty list"),
        ('{"boxes": []}', InvalidBoxesError, "boxes must be a non-empty list"),
        ('{"boxes": [[0, 0, 9, 9]], "max_faces": 0}', InvalidRequestError, "max_faces"),
        (
            json.dumps({"boxes": [[0, 0, 9, 9]] * 5}),
            TooManyFacesError,
            "5 boxes sent; this stream takes 4 faces",
        ),
    ],
)
def test_bad_options_are_refused_saying_why(text: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as raised:
        parse_options(text, OPTIONS, 8)
    assert words in str(raised.value)


def test_close_reasons_fit_a_close_frame() -> None:
    assert close_reason("short") == "short"
    long = close_reason("é" * 200)
    assert len(long.encode()) <= 123 and long.endswith("...")


def test_the_tracked_crop_places_the_mean_shape_as_the_box_convention_does() -> None:
    from model.crop import initial_shape_from_box
    from service.tracking import tracked_initial_shape

    mean_shape = shape(56.0, 56.0, 30.0)
    upright = shape(300.0, 200.0, 80.0)
    np.testing.assert_allclose(
        tracked_initial_shape(upright, mean_shape),
        initial_shape_from_box(mean_shape, bounding_box(upright)),
        atol=1e-6,
    )
    # A face turned in the image plane gets the same initial shape, turned with it.
    angle = 0.3
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = upright.mean(axis=0)
    turned = (upright - centre) @ turn.T + centre
    expected = (tracked_initial_shape(upright, mean_shape) - centre) @ turn.T + centre
    np.testing.assert_allclose(tracked_initial_shape(turned, mean_shape), expected, atol=1e-6)
