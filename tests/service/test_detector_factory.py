"""service.detectors.factory: the box-less strategy the settings ask for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.detectors.centerface import CenterFace
from service.detectors.centerface_calibration import CENTERFACE_BOX_MAPPING
from service.detectors.factory import build_initialiser, warm_up
from service.initialisation import DetectorBoxes, WholeImage


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("DAN_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_no_detector_keeps_the_papers_procedure(tiny_model: Path) -> None:
    initialiser = build_initialiser(Settings(model_path=tiny_model, detector="none"), "cpu")
    assert isinstance(initialiser, WholeImage)


@pytest.mark.usefixtures("clean_env")
def test_centerface_behind_detector_boxes_with_the_settings_and_the_fitted_mapping(
    tiny_model: Path,
) -> None:
    settings = Settings(
        model_path=tiny_model,
        detector="centerface",
        detector_threshold=0.6,
        detector_min_face=24,
        detector_max_side=320,
        detector_init="keypoints",
        max_faces=3,
    )
    initialiser = build_initialiser(settings, "cpu")
    assert isinstance(initialiser, DetectorBoxes)
    assert isinstance(initialiser.detector, CenterFace)
    assert (initialiser.detector.threshold, initialiser.detector.max_side) == (0.6, 320)
    assert (initialiser.max_faces, initialiser.min_score, initialiser.min_size) == (3, 0.6, 24)
    assert initialiser.box_mapping == CENTERFACE_BOX_MAPPING
    assert initialiser.crop_from == "keypoints"
    warm_up(initialiser)  # a blank image: no face, no error
    assert initialiser.propose(np.zeros((100, 100), dtype=np.uint8)) == []
