"""The grayscale rule: how a decoded image becomes the network's 8-bit gray input.

One rule for training, evaluation and the service (the exported model's
``dan.input_format`` metadata names it): a colour pixel's gray is the mean of
its R, G and B rounded to the nearest integer, ``(r + g + b + 1) // 3`` (the
reference code's float ``mean + 0.5`` truncated, which never meets a tie);
alpha is ignored and the channel order does not matter (OpenCV's B, G, R and
Pillow's R, G, B give the same gray). Values of a 16-bit range (0..65535) are
first scaled to 0..255, rounded to the nearest. Decoding (files, uploads,
palettes, EXIF orientation) is the callers'; this module only sees arrays.
numpy only (no torch).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model.arrays import GrayImage

WIDE_MAX = 65535  # the top of the 16-bit range scaled to 255


def gray_from_colour(pixels: npt.NDArray[np.uint8]) -> GrayImage:
    """Gray (H, W) of 8-bit colour pixels (H, W, C): the rounded mean of the first three channels."""
    if pixels.ndim != 3 or pixels.shape[2] < 3 or pixels.dtype != np.uint8:
        raise ValueError(
            f"expected 8-bit colour pixels (H, W, 3 or 4), got {pixels.dtype} {pixels.shape}"
        )
    total = pixels[..., 0].astype(np.uint16)  # r + g + b <= 765, added plane by plane (fast)
    total += pixels[..., 1]
    total += pixels[..., 2]
    total += np.uint16(1)
    total //= np.uint16(3)
    return np.asarray(total, dtype=np.uint8)


def gray_from_wide(values: npt.ArrayLike) -> GrayImage:
    """8-bit values (same shape) of integers of a 16-bit range: clipped to 0..65535, scaled, rounded."""
    wide = np.clip(np.asarray(values, dtype=np.int64), 0, WIDE_MAX)
    return np.asarray((wide * 255 + WIDE_MAX // 2) // WIDE_MAX, dtype=np.uint8)


def to_gray(pixels: npt.NDArray[np.generic]) -> GrayImage:
    """8-bit grayscale (H, W) of a decoded image array.

    Accepts (H, W) gray, (H, W, 2) gray with alpha, or (H, W, 3 / 4) colour
    with or without alpha, of 8-bit (uint8) or wider integer samples (a
    16-bit range, scaled to 8 bits first).
    """
    if pixels.ndim not in (2, 3) or not np.issubdtype(pixels.dtype, np.integer):
        raise ValueError(
            f"expected an integer image (H, W) or (H, W, C), got {pixels.dtype} {pixels.shape}"
        )
    narrow: npt.NDArray[np.uint8] = (
        pixels if pixels.dtype == np.uint8 else gray_from_wide(pixels)  # type: ignore[assignment]
    )
    if narrow.ndim == 2:
        return np.ascontiguousarray(narrow)
    channels = narrow.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        return np.ascontiguousarray(narrow[..., 0])
    if channels in (3, 4):
        return gray_from_colour(narrow)
    raise ValueError(f"expected 1 to 4 channels, got {channels}")
