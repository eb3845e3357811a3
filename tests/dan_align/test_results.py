"""dan_align.results: the typed answer, with and without the optional per-face fields."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dan_align import Alignment, Pose, ResponseFormatError
from dan_align.results import parse_alignment


def answer(**face_fields: Any) -> dict[str, Any]:
    face: dict[str, Any] = {
        "box": [10.0, 20.0, 110.0, 120.0],
        "box_source": "detector",
        "score": 0.97,
        "landmarks": [[float(i), float(2 * i)] for i in range(68)],
        "timings": {
            "decode_ms": 1.0,
            "detect_ms": None,
            "queue_wait_ms": 2.0,
            "inference_ms": 3.0,
            "total_ms": 7.5,
        },
    }
    face.update(face_fields)
    return {
        "image": {"width": 200, "height": 150},
        "model": {"name": "dan-300w", "version": "1.1.0"},
        "faces": [face],
    }


def test_the_answer_of_today_has_no_confidence_nor_pose() -> None:
    result = parse_alignment(answer())
    assert isinstance(result, Alignment)
    assert (result.image.width, result.image.height) == (200, 150)
    assert (result.model.name, result.model.version) == ("dan-300w", "1.1.0")
    (face,) = result.faces
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float64
    np.testing.assert_array_equal(face.landmarks[5], [5.0, 10.0])
    np.testing.assert_array_equal(face.box, [10.0, 20.0, 110.0, 120.0])
    assert face.box_source == "detector" and face.score == pytest.approx(0.97)
    assert face.confidence is None and face.status is None and face.pose is None
    assert face.timings is not None and face.timings.detect_ms is None
    assert face.timings.total_ms == 7.5
    assert result.landmarks.shape == (1, 68, 2)


def test_confidence_status_and_pose_when_the_service_sends_them() -> None:
    result = parse_alignment(
        answer(confidence=0.91, status="ok", pose={"yaw": 12.5, "pitch": -3.0, "roll": 1.25})
    )
    (face,) = result.faces
    assert face.confidence == pytest.approx(0.91)
    assert face.status == "ok"
    assert face.pose == Pose(yaw=12.5, pitch=-3.0, roll=1.25)


def test_fields_a_newer_service_adds_are_kept() -> None:
    result = parse_alignment(answer(quality={"blur": 0.1}))
    assert result.faces[0].extra == {"quality": {"blur": 0.1}}
    assert result.raw["faces"][0]["quality"] == {"blur": 0.1}


def test_no_face_gives_an_empty_stack() -> None:
    body = answer()
    body["faces"] = []
    assert parse_alignment(body).landmarks.shape == (0, 68, 2)


@pytest.mark.parametrize(
    "body",
    [
        {"faces": []},
        {**answer(), "faces": [{"box": [1, 2, 3, 4], "landmarks": [[0, 0]] * 5}]},
        {**answer(), "faces": [{"box": [1, 2, 3], "landmarks": [[0, 0]] * 68}]},
        ["not", "an", "object"],
    ],
)
def test_what_is_not_an_align_answer_is_refused(body: Any) -> None:
    with pytest.raises(ResponseFormatError):
        parse_alignment(body)
