"""A real multi-face photo for the detection tests: 300-W test crops side by side on one canvas.

Each face keeps its annotation (the ``boxes.csv`` box, mapped with the crop),
so a test knows where every face is. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.dataset import Sample, read_gray

CANVAS = (420, 1000)  # (H, W)
BACKGROUND = 90


@dataclass(frozen=True)
class GroupPhoto:
    gray: np.ndarray  # (H, W) uint8
    boxes: np.ndarray  # (N, 4) the faces' 300-W boxes in canvas pixels, left to right


def group_photo(samples: list[Sample], sides: list[int]) -> GroupPhoto:
    """The samples' whole crops, shrunk to ``sides`` px, left to right with gaps."""
    canvas = np.full(CANVAS, BACKGROUND, dtype=np.uint8)
    boxes = []
    x = 10
    for sample, side in zip(samples, sides, strict=True):
        image = read_gray(sample.image_path)
        factor = side / image.shape[1]
        small = cv2.resize(
            image, (side, round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA
        )
        y = (CANVAS[0] - small.shape[0]) // 2
        canvas[y : y + small.shape[0], x : x + side] = small
        shift = np.array([x, y, x, y]) - 0.5  # pixel centres: p' = (p + 0.5) * factor - 0.5
        boxes.append((sample.box("file") + 0.5) * factor + shift)
        x += side + 20
    if x - 20 > CANVAS[1]:
        raise ValueError(f"faces of {sides} px do not fit a {CANVAS[1]} px wide canvas")
    return GroupPhoto(canvas, np.array(boxes))
