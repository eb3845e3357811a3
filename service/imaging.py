"""Uploaded bytes -> an 8-bit grayscale image in its displayed orientation, within limits.

Grayscale is what training feeds the network: the one rule of
``model.grayscale`` (the mean of R, G and B, rounded), applied to Pillow's
pixels. Alpha is ignored, palettes and CMYK are converted to RGB, 16-bit and
32-bit integer images are scaled from 0..65535 to 0..255, and the EXIF
orientation is applied so that pixels (and landmarks) are those of the image
as displayed. Only a fixed set of formats is opened at all.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from model.arrays import GrayImage
from model.grayscale import gray_from_colour, gray_from_wide
from service.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedImageError,
)
from service.image_data import check_data_suffices

log = logging.getLogger(__name__)

# Pillow's JPEG reader also opens the MPO files of many phone cameras (format "MPO").
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

_ORIENTATION_TAG = int(ExifTags.Base.Orientation)


@functools.cache
def _openable_formats() -> tuple[str, ...]:
    """The accepted formats this Pillow build can open."""
    Image.init()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: grayscale pixels (H, W) as displayed, and what it was."""

    gray: GrayImage
    format: str  # as Pillow names it, e.g. "JPEG"
    mode: str  # Pillow mode of the file, e.g. "RGB", "I;16"
    orientation: int  # EXIF orientation applied (1 = none)

    @property
    def width(self) -> int:
        return int(self.gray.shape[1])

    @property
    def height(self) -> int:
        return int(self.gray.shape[0])


def decode_image(data: bytes, limits: ImageLimits) -> DecodedImage:
    """Decode an upload; raises a ``ServiceError`` saying what is wrong with it."""
    if not data:
        raise EmptyImageError("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes"
        )
    try:
        image = Image.open(io.BytesIO(data), formats=_openable_formats())
    except UnidentifiedImageError:
        raise NotAnImageError(
            f"the upload ({len(data)} bytes) is not an image in an accepted format "
            f"({', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Image.DecompressionBombError:  # past Pillow's own bound, far past ours
        raise TooManyPixelsError(
            f"the image has too many pixels; the limit is {limits.max_pixels} pixels"
        ) from None
    except Exception as e:  # decoders of untrusted data raise many types
        raise CorruptImageError(
            f"the image is truncated or corrupt: its header cannot be read ({e})"
        ) from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise CorruptImageError(f"the image has no pixels ({width} x {height})")
        if width * height > limits.max_pixels:
            raise TooManyPixelsError(
                f"the image is {width} x {height} = {width * height} pixels; the limit is "
                f"{limits.max_pixels} pixels"
            )
        check_data_suffices(data, str(image.format), width, height)  # before any pixel
        try:
            image.load()
            orientation = _orientation(image)
            gray = to_gray(image)
        except (UnsupportedImageError, TooManyPixelsError):
            raise
        except Exception as e:
            raise CorruptImageError(
                f"the {image.format} image is truncated or corrupt: {e}"
            ) from None
        return DecodedImage(
            gray=orient(gray, orientation),
            format=str(image.format),
            mode=image.mode,
            orientation=orientation,
        )


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the image's header says, without decoding a pixel; None when the
    header cannot be read (``decode_image`` says why)."""
    try:
        with Image.open(io.BytesIO(data), formats=_openable_formats()) as image:
            width, height = image.size
    except Exception:  # decoders of untrusted data raise many types
        return None
    return int(width), int(height)


def warm_up() -> None:
    """Load Pillow's plugins and codecs now rather than in the first request."""
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, fmt)
        decode_image(buffer.getvalue(), ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of an image; 1 when absent, unreadable or out of range."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not make a good image unusable
        log.debug("unreadable EXIF block ignored", exc_info=True)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(pixels: GrayImage, orientation: int) -> GrayImage:
    """Pixels as displayed for an EXIF orientation (what ``ImageOps.exif_transpose`` does)."""
    views = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180
        4: lambda a: a[::-1, :],  # mirrored top-bottom
        5: lambda a: a.T,  # transposed
        6: lambda a: np.rot90(a, k=-1),  # display rotates 90 clockwise
        7: lambda a: a[::-1, ::-1].T,  # transversed
        8: lambda a: np.rot90(a, k=1),  # display rotates 90 counter-clockwise
    }
    return np.ascontiguousarray(views[orientation](pixels))


def to_gray(image: Image.Image) -> GrayImage:
    """8-bit grayscale (H, W) of a loaded Pillow image of any supported mode."""
    mode = image.mode
    if mode == "L":
        return np.array(image, dtype=np.uint8)
    if mode in ("LA", "La"):
        return np.array(image.getchannel(0), dtype=np.uint8)
    if mode == "1":
        return np.array(image.convert("L"), dtype=np.uint8)
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (32-bit): 16-bit range
        return gray_from_wide(np.asarray(image))
    if mode == "F":
        raise UnsupportedImageError(
            "32-bit floating point images (mode F) have no agreed brightness range; send an 8- or "
            "16-bit image"
        )
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        rgb = np.asarray(image, dtype=np.uint8)
    else:  # P, PA, CMYK, YCbCr, HSV, LAB, ...
        try:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except ValueError as e:
            raise UnsupportedImageError(
                f"images of mode {mode} cannot be converted to RGB: {e}"
            ) from None
    return gray_from_colour(rgb)
