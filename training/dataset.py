"""300-W in its official layout: subsets, `.pts` landmarks, face boxes, images.

Paths are arguments: the same loader reads the obtainable part in
``../shared/data/300w`` and a full official download. Landmarks and boxes are
converted from the 300-W 1-based convention to 0-based pixel centres.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from model.arrays import FloatArray, GrayImage
from model.geometry import bounding_box
from model.grayscale import to_gray
from model.landmarks import NUM_LANDMARKS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Folders (relative to the 300-W root) of each basic subset of the paper's protocol.
SUBSET_FOLDERS: dict[str, tuple[str, ...]] = {
    "afw": ("afw",),
    "lfpw_train": ("lfpw/trainset",),
    "helen_train": ("helen/trainset",),
    "lfpw_test": ("lfpw/testset",),
    "helen_test": ("helen/testset",),
    "ibug": ("ibug",),
    "private": ("300W/01_Indoor", "300W/02_Outdoor"),
}
# The named splits of the paper.
SPLITS: dict[str, tuple[str, ...]] = {
    "training": ("afw", "lfpw_train", "helen_train"),
    "common": ("lfpw_test", "helen_test"),
    "challenging": ("ibug",),
    "full": ("lfpw_test", "helen_test", "ibug"),
    "private": ("private",),
}

# Where a face box comes from: the landmarks' extent or the detector box file.
BoxFrom = Literal["landmarks", "file"]


class DatasetError(ValueError):
    """The 300-W folder or one of its files is not what was expected."""


@dataclass(frozen=True)
class Sample:
    """One annotated face: where its image is, its landmarks (68, 2) and its detector box."""

    name: str  # path relative to the 300-W root, e.g. "afw/134212_1.jpg"
    image_path: Path
    landmarks: FloatArray
    detector_box: FloatArray | None  # [x_min, y_min, x_max, y_max], or None if not in the box file

    def box(self, source: BoxFrom) -> FloatArray:
        """The face box from the box file or from the landmarks' extent."""
        if source == "landmarks":
            return bounding_box(self.landmarks)
        if source == "file":
            if self.detector_box is None:
                raise DatasetError(f"{self.name} has no box in the box file")
            return self.detector_box
        raise DatasetError(f"box source must be 'landmarks' or 'file', got {source!r}")


def read_pts(path: Path) -> FloatArray:
    """Landmarks (68, 2) of an iBUG `.pts` file (with or without header), 0-based."""
    numbers: list[list[float]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line in ("{", "}") or ":" in line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"{path}: expected 'x y' per line, got {line!r}")
        numbers.append([float(parts[0]), float(parts[1])])
    points = np.asarray(numbers, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise DatasetError(f"{path}: expected {NUM_LANDMARKS} points, got {len(points)}")
    return points - 1.0


def read_box_csv(path: Path) -> dict[str, FloatArray]:
    """Boxes of a `boxes.csv` (image,xmin,ymin,xmax,ymax; 1-based), keyed by image name, 0-based."""
    boxes: dict[str, FloatArray] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        expected = {"image", "xmin", "ymin", "xmax", "ymax"}
        if reader.fieldnames is None or not expected <= set(reader.fieldnames):
            raise DatasetError(
                f"{path}: expected columns {sorted(expected)}, got {reader.fieldnames}"
            )
        for row in reader:
            box = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes[row["image"]] = np.asarray(box, dtype=np.float64) - 1.0
    return boxes


def read_box_mats(paths: Iterable[Path]) -> dict[str, FloatArray]:
    """Detector boxes of the official ``bounding_boxes_*.mat`` files, keyed by image file name."""
    try:
        from scipy.io import loadmat  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DatasetError("reading bounding_boxes_*.mat needs scipy: pip install scipy") from e
    boxes: dict[str, FloatArray] = {}
    for path in paths:
        for entry in loadmat(str(path))["bounding_boxes"][0]:
            name = str(entry[0][0][0][0])
            detector = np.asarray(entry[0][0][1][0], dtype=np.float64)
            boxes[name] = detector - 1.0
    return boxes


def load_boxes(root: Path, box_file: Path | None = None) -> dict[str, FloatArray]:
    """Detector boxes keyed by the image's relative path (or by its file name for .mat files).

    ``box_file`` defaults to ``root/boxes.csv``, else the official ``.mat``
    files under ``root/Bounding Boxes`` or ``root``.
    """
    if box_file is not None:
        if box_file.suffix == ".mat":
            return read_box_mats([box_file])
        return read_box_csv(box_file)
    if (root / "boxes.csv").is_file():
        return read_box_csv(root / "boxes.csv")
    mats = sorted(root.glob("**/bounding_boxes_*.mat"))
    if mats:
        return read_box_mats(mats)
    log.warning("no box file under %s: only landmark boxes are available", root)
    return {}


def _image_for(pts: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = pts.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def load_subset(root: Path, subset: str, boxes: dict[str, FloatArray]) -> list[Sample]:
    """All annotated faces of one basic subset (empty if its folders are absent)."""
    if subset not in SUBSET_FOLDERS:
        raise DatasetError(f"unknown subset {subset!r}; known: {sorted(SUBSET_FOLDERS)}")
    samples = []
    for folder in SUBSET_FOLDERS[subset]:
        for pts in sorted((root / folder).glob("*.pts")):
            image = _image_for(pts)
            if image is None:
                log.warning("%s has no image beside it; skipped", pts)
                continue
            name = image.relative_to(root).as_posix()
            box = boxes.get(name, boxes.get(image.name))
            samples.append(Sample(name, image, read_pts(pts), box))
    return samples


@dataclass(frozen=True)
class Split:
    name: str
    samples: list[Sample]
    present: tuple[str, ...]  # basic subsets found
    absent: tuple[str, ...]  # basic subsets whose folders hold no annotated image


def load_split(root: Path, split: str, box_file: Path | None = None) -> Split:
    """One of the paper's splits (``training``, ``common``, ``challenging``, ``full``, ``private``)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; known: {sorted(SPLITS)}")
    if not root.is_dir():
        raise DatasetError(f"300-W root {root} is not a folder")
    boxes = load_boxes(root, box_file)
    samples: list[Sample] = []
    present: list[str] = []
    absent: list[str] = []
    for subset in SPLITS[split]:
        found = load_subset(root, subset, boxes)
        (present if found else absent).append(subset)
        samples += found
    if absent:
        log.info("split %s: subsets absent from %s: %s", split, root, ", ".join(absent))
    return Split(split, samples, tuple(present), tuple(absent))


def holdout(samples: Sequence[Sample], count: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off ``count`` samples chosen with a fixed seed: (rest, held out)."""
    if not 0 <= count < len(samples):
        raise DatasetError(f"cannot hold out {count} of {len(samples)} samples")
    order = np.random.default_rng(seed).permutation(len(samples))
    held = set(order[:count].tolist())
    rest = [s for i, s in enumerate(samples) if i not in held]
    return rest, [s for i, s in enumerate(samples) if i in held]


def read_gray(path: Path) -> GrayImage:
    """An image file as 8-bit grayscale (H, W), by the one grayscale rule (``model.grayscale``)."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"cannot read image {path}")
    try:
        return to_gray(data)
    except ValueError as e:
        raise DatasetError(f"{path}: {e}") from None
