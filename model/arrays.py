"""The array types of the whole codebase: points and transforms in float64, images in uint8.

Points are (..., 2) in pixels (the centre of the top-left pixel at (0, 0)),
transforms 2x3 affine matrices, images 8-bit grayscale (H, W).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
GrayImage = npt.NDArray[np.uint8]
