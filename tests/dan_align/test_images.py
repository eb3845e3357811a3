"""dan_align.images: paths, bytes, PIL images and numpy arrays become the files uploaded."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dan_align import InputError
from dan_align.images import encode_image


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def test_a_path_is_sent_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "face.JPG"
    path.write_bytes(b"\xff\xd8 jpeg bytes")
    encoded = encode_image(path)
    assert (encoded.data, encoded.filename, encoded.content_type) == (
        b"\xff\xd8 jpeg bytes",
        "face.JPG",
        "image/jpeg",
    )
    assert encode_image(str(path)).data == encoded.data


def test_bytes_are_sent_as_they_are() -> None:
    for data in (b"abc", bytearray(b"abc"), memoryview(b"abc")):
        assert encode_image(data).data == b"abc"


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_arrays_are_encoded_losslessly_in_rgb_order(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    encoded = encode_image(array)
    assert encoded.content_type == "image/png"
    import cv2

    back = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if len(shape) == 3 and shape[2] == 3:
        back = back[:, :, ::-1]
    elif len(shape) == 3 and shape[2] == 4:
        back = back[:, :, [2, 1, 0, 3]]
    np.testing.assert_array_equal(back, array.reshape(back.shape))


def test_pil_images_are_encoded_losslessly() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decoded(encode_image(Image.fromarray(pixels)).data), pixels)
    cmyk = Image.fromarray(pixels).convert("CMYK")
    assert decoded(encode_image(cmyk).data).shape == (6, 9, 3)


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.zeros((4, 4), np.float32), "uint8 or uint16"),
        (np.zeros((4, 4, 2), np.uint8), "(H, W, 3)"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (12, "got int"),
    ],
)
def test_what_cannot_be_sent_is_refused_in_words(image: object, words: str) -> None:
    with pytest.raises(InputError, match=re.escape(words)):
        encode_image(image)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.jpg"):
        encode_image(tmp_path / "missing.jpg")
