"""service.detectors.factory: the box-less strategy the settings ask for, and its timing.

The detector behind ``DetectorBoxes`` times itself; the strategy hands on those seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.arrays import GrayImage
from service.config import Settings
from service.detectors.centerface import CenterFace, load_calibration
from service.detectors.factory import build_initialiser, warm_up
from service.detectors.interface import Detections
from service.initialisation import DetectorBoxes, WholeImage
from training.dataset import Sample, read_gray


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
def test_centerface_behind_detector_boxes_with_the_settings_and_its_calibration(
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
    assert initialiser.detector.box_mapping == load_calibration()
    assert initialiser.crop_from == "keypoints"
    warm_up(initialiser)  # a blank image: no face, no error
    assert initialiser.propose(np.zeros((100, 100), dtype=np.uint8)) == []


class RecordingCenterFace(CenterFace):
    """The real CenterFace, keeping what its last ``detect`` returned."""

    last: Detections | None = None

    def detect(self, image: GrayImage) -> Detections:
        self.last = super().detect(image)
        return self.last


def test_the_strategy_hands_on_the_detectors_own_seconds_and_mapped_boxes(
    real_test_faces: list[Sample],
) -> None:
    detector = RecordingCenterFace(threshold=0.5, threads=1)
    strategy = DetectorBoxes(detector, max_faces=3, min_score=0.5)
    proposals, seconds = strategy.propose_timed(read_gray(real_test_faces[0].image_path))
    assert detector.last is not None and detector.last.seconds > 0
    assert seconds == detector.last.seconds  # the detector's number, not a second clock
    (face,) = proposals
    assert face.source == "detector"
    assert face.box == pytest.approx(detector.box_mapping.apply(detector.last.faces[0].box))


def test_the_detectors_do_not_import_the_strategies() -> None:
    """``service.initialisation`` builds on the detector package, never the other way round
    (only ``factory`` joins the two)."""
    code = (
        "import sys; import service.detectors.centerface, service.detectors.interface; "
        "print(*sorted(m for m in sys.modules if m.startswith('service')), sep='\\n')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = set(result.stdout.split())
    assert {"service.detectors.calibration", "service.detectors.interface"} <= loaded
    assert not loaded & {"service.initialisation", "service.pipeline", "service.app"}, loaded
