"""training.dataset: the official 300-W layout, .pts with and without header, box files, splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.dataset import (
    DatasetError,
    holdout,
    load_split,
    read_box_csv,
    read_pts,
)


def _write_face(folder: Path, name: str, suffix: str, header: bool, offset: float) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    pts = np.stack([np.linspace(10, 60, 68) + offset, np.linspace(20, 70, 68)], axis=1)
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    text = f"version: 1\nn_points:  68\n{{\n{body}\n}}\n" if header else body + "\n"
    (folder / f"{name}.pts").write_text(text)
    cv2.imwrite(str(folder / f"{name}{suffix}"), np.full((80, 90, 3), 128, np.uint8))
    return pts - 1.0


@pytest.fixture
def tiny_300w(tmp_path: Path) -> Path:
    _write_face(tmp_path / "afw", "a_1", ".jpg", header=True, offset=0)
    _write_face(tmp_path / "lfpw" / "trainset", "b", ".png", header=False, offset=1)
    _write_face(tmp_path / "helen" / "trainset", "c", ".jpg", header=True, offset=2)
    _write_face(tmp_path / "lfpw" / "testset", "d", ".png", header=True, offset=3)
    (tmp_path / "boxes.csv").write_text(
        "image,xmin,ymin,xmax,ymax\nlfpw/testset/d.png,11,21,61,71\n"
    )
    return tmp_path


def test_reads_pts_with_and_without_header(tiny_300w: Path) -> None:
    with_header = read_pts(tiny_300w / "afw" / "a_1.pts")
    without = read_pts(tiny_300w / "lfpw" / "trainset" / "b.pts")
    assert with_header.shape == without.shape == (68, 2)
    np.testing.assert_allclose(without - with_header, np.tile([1.0, 0.0], (68, 1)))
    assert with_header[0, 0] == pytest.approx(9.0)  # 1-based 10.0 -> 0-based 9.0


def test_rejects_a_pts_with_the_wrong_count(tmp_path: Path) -> None:
    (tmp_path / "x.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    with pytest.raises(DatasetError, match="expected 68 points, got 2"):
        read_pts(tmp_path / "x.pts")


def test_splits_report_absent_subsets(tiny_300w: Path) -> None:
    training = load_split(tiny_300w, "training")
    assert [s.name for s in training.samples] == [
        "afw/a_1.jpg",
        "lfpw/trainset/b.png",
        "helen/trainset/c.jpg",
    ]
    assert training.absent == ()
    common = load_split(tiny_300w, "common")
    assert common.present == ("lfpw_test",) and common.absent == ("helen_test",)
    full = load_split(tiny_300w, "full")
    assert "ibug" in full.absent
    private = load_split(tiny_300w, "private")
    assert private.samples == [] and private.absent == ("private",)


def test_boxes_from_file_or_landmarks(tiny_300w: Path) -> None:
    (sample,) = load_split(tiny_300w, "common").samples
    np.testing.assert_allclose(sample.box("file"), [10, 20, 60, 70])
    np.testing.assert_allclose(sample.box("landmarks")[:2], sample.landmarks.min(axis=0))
    (no_box,) = [s for s in load_split(tiny_300w, "training").samples if s.name.startswith("afw")]
    with pytest.raises(DatasetError, match="no box in the box file"):
        no_box.box("file")


def test_holdout_is_fixed_by_the_seed(tiny_300w: Path) -> None:
    samples = load_split(tiny_300w, "training").samples
    rest, held = holdout(samples, 1, seed=0)
    assert len(rest) == 2 and len(held) == 1 and held[0] not in rest
    assert holdout(samples, 1, seed=0)[1] == held


def test_real_box_file_matches_real_images(data_root: Path) -> None:
    boxes = read_box_csv(data_root / "boxes.csv")
    common = load_split(data_root, "common")
    assert len(common.samples) == 554 and common.absent == ()
    assert all(s.detector_box is not None for s in common.samples)
    assert len(boxes) >= 554
