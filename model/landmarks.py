"""The iBUG 68-point landmark scheme: named index groups and the mirror permutation.

Indices are 0-based. numpy-only, so the service can use it without torch.
"""

from __future__ import annotations

import numpy as np

from model.arrays import FloatArray

SCHEME = "ibug68"
NUM_LANDMARKS = 68

JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))  # the subject's right, on the image's left
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BASE = tuple(range(31, 36))
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
OUTER_LIP = tuple(range(48, 60))
INNER_LIP = tuple(range(60, 68))

# Outer eye corners: the inter-ocular normalisation of the 300-W benchmark.
OUTER_EYE_CORNERS = (36, 45)

# Where point i of a face lands in the horizontally mirrored face.
MIRROR_PERMUTATION: tuple[int, ...] = (
    *range(16, -1, -1),  # jaw 16..0
    *range(26, 16, -1),  # brows 26..17
    *range(27, 31),  # nose bridge keeps its order
    *range(35, 30, -1),  # nose base 35..31
    45, 44, 43, 42, 47, 46,  # right eye <- left eye
    39, 38, 37, 36, 41, 40,  # left eye <- right eye
    *range(54, 47, -1),  # outer lip top 54..48
    *range(59, 54, -1),  # outer lip bottom 59..55
    *range(64, 59, -1),  # inner lip top 64..60
    67, 66, 65,  # inner lip bottom
)  # fmt: skip


def mirror_landmarks(points: FloatArray, width: int) -> FloatArray:
    """Landmarks (..., 68, 2) of the image flipped left-right, pixel centres 0-based."""
    mirrored = np.array(points, dtype=np.float64, copy=True)[..., MIRROR_PERMUTATION, :]
    mirrored[..., 0] = (width - 1) - mirrored[..., 0]
    return mirrored


def mirror_average(points: FloatArray, mirrored_points: FloatArray, width: int) -> FloatArray:
    """The mean of landmarks (..., 68, 2) found on an image and of those found on the same
    image flipped left-right (mapped back by ``mirror_landmarks``): test-time mirror averaging."""
    return 0.5 * (np.asarray(points, dtype=np.float64) + mirror_landmarks(mirrored_points, width))


def pupils(points: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Centres of the right and left eye (..., 2): the means of their six points."""
    return points[..., RIGHT_EYE, :].mean(axis=-2), points[..., LEFT_EYE, :].mean(axis=-2)


def inter_pupil_distance(points: FloatArray) -> FloatArray:
    right, left = pupils(points)
    return np.asarray(np.linalg.norm(left - right, axis=-1))


def inter_ocular_distance(points: FloatArray) -> FloatArray:
    a, b = OUTER_EYE_CORNERS
    return np.asarray(np.linalg.norm(points[..., b, :] - points[..., a, :], axis=-1))
