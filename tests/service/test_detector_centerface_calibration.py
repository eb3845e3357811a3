"""service.detectors.centerface_calibration: the fitted mapping brings CenterFace to 300-W boxes.

The mapping was fitted on the training images; here it must also hold on
common-test photos it never saw.
"""

from __future__ import annotations

import numpy as np

from service.detectors.calibration import BoxMapping, box_iou
from service.detectors.centerface import CenterFace
from service.detectors.centerface_calibration import CENTERFACE_BOX_MAPPING
from training.dataset import Sample, read_gray


def test_the_mapping_is_fitted_not_the_identity() -> None:
    assert BoxMapping() != CENTERFACE_BOX_MAPPING


def test_mapped_boxes_match_the_300w_boxes_on_unseen_test_photos(
    test_faces: list[Sample],
) -> None:
    detector = CenterFace(threshold=0.5, threads=1)
    raw, mapped = [], []
    for sample in test_faces:
        box = detector.detect(read_gray(sample.image_path))[0].box
        target = sample.box("file")
        raw.append(box_iou(box, target)[0, 0])
        mapped.append(box_iou(CENTERFACE_BOX_MAPPING.apply(box), target)[0, 0])
    assert np.mean(mapped) > np.mean(raw) + 0.05
    assert min(mapped) > 0.75
