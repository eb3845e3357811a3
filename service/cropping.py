"""A face box or five detector keypoints -> the network's input crop; crop landmarks -> image.

The crop itself is ``model.crop`` (the one definition training and
evaluation use too): ``crop_face`` for a box, ``warp_face`` for a transform,
``to_image`` for landmarks back, re-exported here for the service. What this
module adds: a detector's five keypoints (eyes, nose tip, mouth corners) can
stand in for the box; the crop is then the similarity taking them onto the
same points of the mean shape (eye = centroid of its six points, nose tip 30,
mouth corners 48 and 54; 0-based).
"""

from __future__ import annotations

import numpy as np

from model.arrays import FloatArray
from model.crop import Crop, crop_face, to_image, warp_face
from model.geometry import fit_similarity
from model.landmarks import LEFT_EYE, RIGHT_EYE

__all__ = [
    "Crop",
    "crop_face",
    "keypoint_crop_transform",
    "keypoints_of",
    "to_image",
    "warp_face",
]

# Mean-shape points matching a detector's five keypoints, in the detector's order. Sides are the
# subject's, as everywhere (model.landmarks): the subject's right eye is on the image's left.
NOSE_TIP = 30
RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER = 48, 54


def keypoints_of(shape: FloatArray) -> FloatArray:
    """The five detector-style keypoints (5, 2) of a 68-point shape."""
    return np.stack(
        [
            shape[list(RIGHT_EYE)].mean(axis=0),
            shape[list(LEFT_EYE)].mean(axis=0),
            shape[NOSE_TIP],
            shape[RIGHT_MOUTH_CORNER],
            shape[LEFT_MOUTH_CORNER],
        ]
    )


def keypoint_crop_transform(keypoints: FloatArray, mean_shape: FloatArray) -> FloatArray:
    """Image -> crop transform (2, 3) from five keypoints (5, 2): eyes, nose tip, mouth corners."""
    return fit_similarity(keypoints, keypoints_of(mean_shape))
