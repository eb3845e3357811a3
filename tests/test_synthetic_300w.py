"""The synthetic 300-W tree the tests fall back on: the official layout, read by the loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from synthetic_300w import FOLDERS, template_shape, write_synthetic_300w

from model.landmarks import MIRROR_PERMUTATION
from training.dataset import load_split, read_gray


def test_the_template_is_a_face_symmetric_under_the_mirror_permutation() -> None:
    shape = template_shape()
    mirrored = shape[list(MIRROR_PERMUTATION)] * [-1.0, 1.0]
    np.testing.assert_allclose(mirrored, shape, atol=1e-12)
    assert shape[36, 0] < shape[39, 0] < shape[42, 0] < shape[45, 0]  # eye corners, left to right
    assert shape[27:31, 1].max() < shape[33, 1] < shape[51, 1] < shape[8, 1]  # nose, mouth, chin


def test_the_tree_loads_like_300w_and_is_the_same_every_time(tmp_path: Path) -> None:
    root = write_synthetic_300w(tmp_path / "a")
    again = write_synthetic_300w(tmp_path / "b")
    training, common = load_split(root, "training"), load_split(root, "common")
    assert (training.absent, common.absent) == ((), ())
    assert len(training.samples) + len(common.samples) == sum(len(n) for n in FOLDERS.values())
    for sample in training.samples + common.samples:
        gray = read_gray(sample.image_path)
        height, width = gray.shape
        assert sample.detector_box is not None
        assert (sample.landmarks >= 0).all() and (sample.landmarks < [width, height]).all()
        x0, y0, x1, y1 = sample.detector_box
        assert x0 < sample.landmarks[:, 0].mean() < x1 and y0 < sample.landmarks[:, 1].mean() < y1
        assert (again / sample.name).read_bytes() == sample.image_path.read_bytes()
    assert (again / "boxes.csv").read_text() == (root / "boxes.csv").read_text()
