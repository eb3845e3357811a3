"""The network's input crop: a face box -> the image -> crop similarity -> the warped crop.

The one definition of the crop, used by training (``training.augment``),
evaluation (``training.evaluate``), the service (``service.cropping``) and
the benchmarks. The box convention ("dan-box", also written into every
exported model's ``dan.box_convention`` metadata): the mean shape is scaled
by the mean of (box width / shape width) and (box height / shape height), not
rotated, and its bounding box centred on the box centre (the initial shape);
the crop transform is the least-squares similarity taking the initial shape
onto the mean shape; the crop is the image resampled through it (bilinear,
edge replicated). Landmarks found in the crop map back by its inverse.
numpy and OpenCV only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray, GrayImage
from model.geometry import apply_affine, bounding_box, fit_similarity, invert_affine


@dataclass(frozen=True)
class Crop:
    """The network input for one face and the image -> crop transform (2, 3) that made it."""

    pixels: GrayImage  # (S, S)
    transform: FloatArray  # (2, 3)


def initial_shape_from_box(mean_shape: npt.ArrayLike, box: npt.ArrayLike) -> FloatArray:
    """The mean shape placed in a face box [x_min, y_min, x_max, y_max]: the DAN box convention.

    The mean shape is scaled by the mean of (box width / shape width) and
    (box height / shape height), not rotated, and its bounding box is centred
    on the box centre.
    """
    shape = np.asarray(mean_shape, dtype=np.float64)
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64))
    if not (x1 > x0 and y1 > y0):
        raise ValueError(
            f"expected a box [x_min, y_min, x_max, y_max] with positive size, got {[x0, y0, x1, y1]}"
        )
    sx0, sy0, sx1, sy1 = bounding_box(shape)
    scale = 0.5 * ((x1 - x0) / (sx1 - sx0) + (y1 - y0) / (sy1 - sy0))
    shape_centre = np.array([(sx0 + sx1) / 2, (sy0 + sy1) / 2])
    box_centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return np.asarray((shape - shape_centre) * scale + box_centre)


def crop_transform(initial_shape: npt.ArrayLike, mean_shape: npt.ArrayLike) -> FloatArray:
    """Image -> crop transform (2, 3): the similarity taking the initial shape onto the mean shape."""
    return fit_similarity(initial_shape, mean_shape)


def box_crop_transform(box: npt.ArrayLike, mean_shape: npt.ArrayLike) -> FloatArray:
    """Image -> crop transform (2, 3) for a face box (see ``initial_shape_from_box``)."""
    return crop_transform(initial_shape_from_box(mean_shape, box), mean_shape)


def warp_crop(image: GrayImage, transform: FloatArray, size: int) -> GrayImage:
    """Crop (size, size) of a grayscale image (H, W) through an image -> crop transform (2, 3).

    Bilinear, the edge replicated beyond the image.
    """
    return np.asarray(
        cv2.warpAffine(
            image,
            transform,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        ),
        dtype=np.uint8,
    )


def warp_face(image: GrayImage, transform: FloatArray, size: int) -> Crop:
    """The crop (size, size) of a grayscale image (H, W) through a transform, with the transform."""
    return Crop(warp_crop(image, transform, size), np.asarray(transform, dtype=np.float64))


def crop_face(image: GrayImage, box: npt.ArrayLike, mean_shape: FloatArray, size: int) -> Crop:
    """The crop (size, size) of a grayscale image (H, W) for a face box [x_min, y_min, x_max, y_max]."""
    return warp_face(image, box_crop_transform(box, mean_shape), size)


def to_image(crop_landmarks: npt.ArrayLike, crop: Crop) -> FloatArray:
    """Landmarks (..., 2) in crop pixels -> pixels of the image the crop was cut from."""
    return apply_affine(invert_affine(crop.transform), crop_landmarks)
