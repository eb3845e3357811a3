"""What ``align`` accepts as an image, turned into the bytes of an image file to upload.

- a path (``str`` or ``os.PathLike``): the file as it is;
- ``bytes``, ``bytearray`` or ``memoryview``: the encoded file (JPEG, PNG, ...) as it is;
- a PIL image: encoded as PNG (lossless);
- a numpy array: ``(H, W)`` grayscale, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, ``uint8`` or
  ``uint16``, encoded as PNG (lossless). The service's grayscale is the mean of the three
  colour channels, so an OpenCV BGR array gives the same landmarks.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
import numpy.typing as npt

from dan_align.errors import InputError

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]

PNG = "image/png"
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # lossless either way; level 1 is fast
_SUFFIX_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": PNG,
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


@dataclass(frozen=True)
class EncodedImage:
    """An image file to upload: its bytes, a file name and a content type."""

    data: bytes
    filename: str
    content_type: str


def encode_image(image: ImageInput) -> EncodedImage:
    """The upload for ``image`` (see the module docstring for what is accepted)."""
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from e
        return EncodedImage(
            data, path.name, _SUFFIX_TYPES.get(path.suffix.lower(), "application/octet-stream")
        )
    if isinstance(image, bytes | bytearray | memoryview):
        return EncodedImage(bytes(image), "image", "application/octet-stream")
    if isinstance(image, np.ndarray):
        return EncodedImage(_png_of_array(image), "image.png", PNG)
    if _is_pil_image(image):
        return EncodedImage(_png_of_pil(image), "image.png", PNG)
    raise InputError(
        "expected a path, the bytes of an image file, a PIL image or a numpy array, "
        f"got {type(image).__name__}"
    )


def _is_pil_image(image: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a serving dependency
        return False
    return isinstance(image, Image.Image)


def _png_of_pil(image: Any) -> bytes:
    buffer = io.BytesIO()
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGB")
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _png_of_array(array: npt.NDArray[Any]) -> bytes:
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"expected a uint8 or uint16 image array, got dtype {array.dtype} "
            "(scale floats to 0-255 and convert with .astype(np.uint8))"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]  # RGB -> the BGR order cv2 writes
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    elif array.ndim != 2:
        raise InputError(
            f"expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"the image array is empty (shape {array.shape})")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array), _PNG_FAST)
    if not ok:  # pragma: no cover - cv2 encodes any uint8/uint16 array of these shapes
        raise InputError(f"could not encode the array of shape {array.shape} as PNG")
    return bytes(encoded.tobytes())
