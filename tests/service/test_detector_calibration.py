"""service.detectors.calibration: the box mapping, its least-squares fit, its file, box overlap."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from service.detectors.calibration import (
    BoxMapping,
    CalibrationError,
    box_iou,
    calibration_json,
    fit_box_mapping,
    parse_calibration,
    read_calibration,
)


def random_boxes(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, 300, count), rng.uniform(0, 300, count)
    w, h = rng.uniform(20, 200, count), rng.uniform(20, 200, count)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def test_the_mapping_moves_the_centre_by_fractions_of_the_size_and_scales_the_sides() -> None:
    mapping = BoxMapping(dx=0.1, dy=-0.2, sw=1.5, sh=0.5)
    # Centre (60, 80), size 40 x 100 -> centre (64, 60), size 60 x 50.
    assert mapping.apply([40.0, 30.0, 80.0, 130.0]) == pytest.approx([34.0, 35.0, 94.0, 85.0])
    batch = mapping.apply(np.array([[40.0, 30.0, 80.0, 130.0]] * 3))
    assert batch.shape == (3, 4)


def test_the_default_mapping_is_the_identity() -> None:
    boxes = random_boxes(5)
    assert np.allclose(BoxMapping().apply(boxes), boxes)


def test_the_fit_recovers_a_known_mapping_exactly() -> None:
    known = BoxMapping(dx=0.03, dy=0.21, sw=0.93, sh=0.77)
    detected = random_boxes(200)
    fitted = fit_box_mapping(detected, known.apply(detected))
    assert fitted.as_dict() == pytest.approx(known.as_dict(), abs=1e-12)


def test_the_fit_averages_noise_in_units_of_the_box_size() -> None:
    known = BoxMapping(dx=-0.05, dy=0.15, sw=1.1, sh=0.8)
    detected = random_boxes(4000, seed=1)
    target = known.apply(detected)
    rng = np.random.default_rng(2)
    size = np.stack([detected[:, 2] - detected[:, 0], detected[:, 3] - detected[:, 1]] * 2, axis=1)
    noisy = target + rng.normal(0.0, 0.05, target.shape) * size
    fitted = fit_box_mapping(detected, noisy)
    assert fitted.as_dict() == pytest.approx(known.as_dict(), abs=0.01)

    # ... and is the least-squares optimum: nudging any number makes the error larger.
    def cost(m: BoxMapping) -> float:
        return float((((m.apply(detected) - noisy) / size) ** 2).sum())

    for field in ("dx", "dy", "sw", "sh"):
        nudged = BoxMapping(**{**fitted.as_dict(), field: fitted.as_dict()[field] + 0.01})
        assert cost(nudged) > cost(fitted)


@pytest.mark.parametrize(
    ("detected", "target", "message"),
    [
        (np.zeros((3, 4)), np.zeros((2, 4)), "two \\(N, 4\\) box arrays"),
        (np.zeros((0, 4)), np.zeros((0, 4)), "two \\(N, 4\\) box arrays"),
        (np.array([[0.0, 0, 0, 10]]), np.array([[0.0, 0, 5, 5]]), "positive width and height"),
    ],
)
def test_the_fit_refuses_unusable_boxes(
    detected: np.ndarray, target: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_box_mapping(detected, target)


def test_side_scales_must_be_positive() -> None:
    with pytest.raises(ValueError, match="side scales must be positive"):
        BoxMapping(sw=0.0)


def test_iou_of_boxes() -> None:
    a = np.array([[0.0, 0, 10, 10]])
    b = np.array([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [20.0, 20, 30, 30]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0])
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_a_calibration_file_round_trips_the_mapping_and_keeps_how_it_was_fitted() -> None:
    mapping = BoxMapping(dx=-0.0179191, dy=0.1113071, sw=1.0118581, sh=0.7893691)
    text = calibration_json(mapping, {"faces": 12, "written_by": "a test"})
    assert json.loads(text)["fit"] == {"faces": 12, "written_by": "a test"}
    assert parse_calibration(text, "x.json").as_dict() == pytest.approx(mapping.as_dict(), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "x.json is not JSON"),
        ("[]", "expected an object with 'box_mapping'"),
        ('{"box_mapping": {"dx": 0, "dy": 0, "sw": 1}}', "'box_mapping': {dx, dy, sw, sh}"),
        ('{"box_mapping": {"dx": 0, "dy": 0, "sw": 1, "sh": 1, "s": 1}}', "expected an object"),
        ('{"box_mapping": {"dx": "0", "dy": 0, "sw": 1, "sh": 1}}', "dx must be a finite number"),
        ('{"box_mapping": {"dx": 0, "dy": true, "sw": 1, "sh": 1}}', "dy must be a finite number"),
        ('{"box_mapping": {"dx": 0, "dy": 0, "sw": NaN, "sh": 1}}', "sw must be a finite number"),
        ('{"box_mapping": {"dx": 0, "dy": 0, "sw": 1, "sh": -1}}', "side scales must be positive"),
    ],
)
def test_a_bad_calibration_file_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(CalibrationError, match=re.escape(message)):
        parse_calibration(text, "x.json")


def test_a_missing_calibration_file_is_refused_naming_it() -> None:
    with pytest.raises(CalibrationError, match=re.escape("service/detectors/absent.json")):
        read_calibration("service.detectors", "absent.json")
