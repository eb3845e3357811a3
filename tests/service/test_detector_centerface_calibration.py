"""CenterFace's calibration: data shipped beside it, loaded by it, bringing its boxes to 300-W.

The mapping (``centerface_calibration.json``, written by ``bench.calibrate_detector``) was
fitted on the training images; here it must also hold on common-test photos it never saw.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import numpy as np
import pytest

from service.detectors import centerface as centerface_module
from service.detectors.calibration import BoxMapping, box_iou, parse_calibration
from service.detectors.centerface import (
    CALIBRATION_FILE,
    WEIGHTS_PACKAGE,
    CenterFace,
    load_calibration,
)
from service.errors import DetectorError
from training.dataset import Sample, read_gray


@pytest.fixture(scope="module")
def centerface() -> CenterFace:
    return CenterFace(threshold=0.5, threads=1)


def test_the_detector_loads_the_shipped_fitted_mapping(centerface: CenterFace) -> None:
    text = (importlib.resources.files(WEIGHTS_PACKAGE) / CALIBRATION_FILE).read_text()
    shipped = parse_calibration(text, CALIBRATION_FILE)
    assert centerface.box_mapping == shipped == load_calibration()
    assert shipped != BoxMapping()  # fitted, not the identity
    fit = json.loads(text)["fit"]
    assert fit["written_by"] == "python -m bench.calibrate_detector"
    assert fit["paired"] <= fit["faces"]


def test_a_given_mapping_replaces_the_shipped_one() -> None:
    identity = BoxMapping()
    assert CenterFace(threads=1, box_mapping=identity).box_mapping is identity


def test_without_its_calibration_the_detector_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(centerface_module, "CALIBRATION_FILE", "absent_calibration.json")
    with pytest.raises(DetectorError, match=r"CenterFace cannot load its calibration: .*absent"):
        CenterFace(threads=1)


def test_mapped_boxes_match_the_300w_boxes_on_unseen_test_photos(
    centerface: CenterFace, real_test_faces: list[Sample]
) -> None:
    raw, mapped = [], []
    for sample in real_test_faces:
        box = centerface.detect(read_gray(sample.image_path)).faces[0].box
        target = sample.box("file")
        raw.append(box_iou(box, target)[0, 0])
        mapped.append(box_iou(centerface.box_mapping.apply(box), target)[0, 0])
    assert np.mean(mapped) > np.mean(raw) + 0.05
    assert min(mapped) > 0.75


def test_the_calibration_benchmark_writes_a_file_the_detector_reads(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import calibrate_detector

    output = tmp_path / CALIBRATION_FILE
    calibrate_detector.main(
        ["--data-root", str(data_root), "--limit", "6", "--output", str(output)]
    )
    assert "6 of 6 training faces paired" in capsys.readouterr().out
    refit = parse_calibration(output.read_text(), str(output))
    fit = json.loads(output.read_text())["fit"]
    assert (fit["faces"], fit["paired"]) == (6, 6)
    assert fit["mean_iou_after"] > fit["mean_iou_before"]
    # Six training faces already give numbers near the shipped fit on 2010.
    shipped = load_calibration()
    assert refit.as_dict() == pytest.approx(shipped.as_dict(), abs=0.05)
