"""A face box -> the network's input crop and its transform, and crop landmarks -> image pixels.

Exactly what training does (``training/augment.py::warp_crop``): the mean
shape placed in the box (``model.geometry.box_crop_transform``), then a
bilinear warp with the edge replicated. Landmarks map back by the inverse.
A detector's five keypoints (eyes, nose tip, mouth corners) can stand in for
the box: the crop is then the similarity taking them onto the same points of
the mean shape (eye = centroid of its six points, nose tip 30, mouth corners
48 and 54; 0-based).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from model.geometry import apply_affine, box_crop_transform, fit_similarity, invert_affine

FloatArray = npt.NDArray[np.float64]
GrayImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Crop:
    """The network input for one face and the image -> crop transform (2, 3) that made it."""

    pixels: GrayImage  # (S, S)
    transform: FloatArray  # (2, 3)


# Mean-shape points matching a detector's keypoints, left and right as seen in the image.
EYE_LEFT = tuple(range(36, 42))
EYE_RIGHT = tuple(range(42, 48))
NOSE_TIP = 30
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


def keypoints_of(shape: FloatArray) -> FloatArray:
    """The five detector-style keypoints (5, 2) of a 68-point shape."""
    return np.stack(
        [
            shape[list(EYE_LEFT)].mean(axis=0),
            shape[list(EYE_RIGHT)].mean(axis=0),
            shape[NOSE_TIP],
            shape[MOUTH_LEFT],
            shape[MOUTH_RIGHT],
        ]
    )


def keypoint_crop_transform(keypoints: FloatArray, mean_shape: FloatArray) -> FloatArray:
    """Image -> crop transform (2, 3) from five keypoints (5, 2): eyes, nose tip, mouth corners."""
    return fit_similarity(keypoints, keypoints_of(mean_shape))


def crop_face(image: GrayImage, box: FloatArray, mean_shape: FloatArray, size: int) -> Crop:
    """Crop (size, size) of a grayscale image (H, W) for a face box [x_min, y_min, x_max, y_max]."""
    return warp_face(image, box_crop_transform(box, mean_shape), size)


def warp_face(image: GrayImage, transform: FloatArray, size: int) -> Crop:
    """Crop (size, size) of a grayscale image (H, W) through an image -> crop transform (2, 3)."""
    pixels = cv2.warpAffine(
        image,
        transform,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return Crop(np.asarray(pixels, dtype=np.uint8), transform)


def to_image(crop_landmarks: FloatArray, crop: Crop) -> FloatArray:
    """Landmarks (N, 2) in crop pixels -> pixels of the image the crop was cut from."""
    return apply_affine(invert_affine(crop.transform), crop_landmarks)
