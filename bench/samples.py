"""The benchmarks' 300-W faces: ``training.dataset``'s loaders, the faces with a detector box.

Every benchmark that scores or feeds real faces takes them from here, so they
all read the box file and the images the way training and evaluation do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.dataset import DatasetError, Sample, load_boxes, load_subset


def boxed_faces(root: Path, subsets: Sequence[str], limit: int = 0) -> list[Sample]:
    """The faces of these basic subsets (e.g. ``training.dataset.SPLITS["common"]``), in that
    order, that have a detector box in the box file; the first ``limit`` (0: all)."""
    boxes = load_boxes(root)
    samples = [s for subset in subsets for s in load_subset(root, subset, boxes)]
    boxed = [s for s in samples if s.detector_box is not None]
    if not boxed:
        raise DatasetError(f"no faces with a detector box in {', '.join(subsets)} under {root}")
    return boxed[:limit] if limit > 0 else boxed
