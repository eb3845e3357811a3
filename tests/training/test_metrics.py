"""training.metrics against values computed by hand on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import auc, failure_rate, normalised_errors, point_errors, summarise


def _face(io: float = 10.0) -> np.ndarray:
    """68 points with outer eye corners 36 and 45 `io` apart and pupils 8 apart."""
    pts = np.zeros((68, 2))
    pts[36:42] = [[-5.0, 0.0], [-4.0, -1.0], [-3.0, -1.0], [-2.0, 0.0], [-3.0, 1.0], [-4.0, 1.0]]
    pts[42:48] = pts[36:42][[3, 2, 1, 0, 5, 4]] * [-1, 1]
    pts[45] = [io / 2, 0.0]
    pts[36] = [-io / 2, 0.0]
    pts[0] = [-8.0, -6.0]
    pts[16] = [8.0, 6.0]  # box 16 x 12 -> diagonal 20
    return pts


def test_normalised_errors_by_hand() -> None:
    target = _face()[None]
    pred = target.copy()
    pred[0, :, 0] += 0.5  # every point 0.5 px off
    assert point_errors(pred, target)[0] == pytest.approx(0.5)
    assert normalised_errors(pred, target, "inter_ocular")[0] == pytest.approx(0.05)
    ipd = np.linalg.norm(target[0, 42:48].mean(0) - target[0, 36:42].mean(0))
    assert normalised_errors(pred, target, "inter_pupil")[0] == pytest.approx(0.5 / ipd)
    assert normalised_errors(pred, target, "box_diagonal")[0] == pytest.approx(0.5 / 20.0)


def test_auc_and_failure_by_hand() -> None:
    errors = np.array([0.02, 0.04, 0.10, 0.06])
    # CED: 0 on [0, .02), 1/4 on [.02, .04), 2/4 on [.04, .06), 3/4 on [.06, .08].
    expected = (0.02 * 0.25 + 0.02 * 0.5 + 0.02 * 0.75) / 0.08
    assert auc(errors, 0.08) == pytest.approx(expected)
    assert failure_rate(errors, 0.08) == pytest.approx(0.25)
    assert auc(np.zeros(3)) == pytest.approx(1.0)
    assert auc(np.full(3, 0.2)) == pytest.approx(0.0)
    assert failure_rate(np.array([0.08, 0.0799])) == pytest.approx(0.5)


def test_summary_collects_every_metric() -> None:
    target = np.stack([_face(), _face(20.0)])
    pred = target + np.array([1.0, 0.0])
    s = summarise(pred, target)
    assert s.images == 2
    assert s.inter_ocular == pytest.approx((1 / 10 + 1 / 20) / 2)
    assert s.failure_0_08 == pytest.approx(0.5)
