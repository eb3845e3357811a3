"""A face box -> the network's input crop and its transform, and crop landmarks -> image pixels.

Exactly what training does (``training/augment.py::warp_crop``): the mean
shape placed in the box (``model.geometry.box_crop_transform``), then a
bilinear warp with the edge replicated. Landmarks map back by the inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from model.geometry import apply_affine, box_crop_transform, invert_affine

FloatArray = npt.NDArray[np.float64]
GrayImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Crop:
    """The network input for one face and the image -> crop transform (2, 3) that made it."""

    pixels: GrayImage  # (S, S)
    transform: FloatArray  # (2, 3)


def crop_face(image: GrayImage, box: FloatArray, mean_shape: FloatArray, size: int) -> Crop:
    """Crop (size, size) of a grayscale image (H, W) for a face box [x_min, y_min, x_max, y_max]."""
    transform = box_crop_transform(box, mean_shape)
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
