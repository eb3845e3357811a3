"""service.imaging: the grayscale rule on Pillow's pixels, every pixel mode, EXIF orientation, limits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from model.grayscale import to_gray as gray_rule
from service.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedImageError,
)
from service.imaging import ImageLimits, decode_image, to_gray
from training.dataset import Sample, read_gray

LIMITS = ImageLimits(max_bytes=10_000_000, max_pixels=10_000_000)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A smooth colour test card (60 x 80) with some noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:60, 0:80]
    card = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 20, (60, 80, 3))
    return np.clip(card, 0, 255).astype(np.uint8)


def test_grayscale_of_a_pillow_image_is_the_rule_on_its_pixels() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = to_gray(Image.fromarray(pixels, "RGB"))
    assert np.array_equal(ours, gray_rule(pixels[..., ::-1]))  # training reads B, G, R


def test_a_real_jpeg_decodes_to_the_pixels_training_saw(test_faces: list[Sample]) -> None:
    for sample in test_faces[:3]:
        decoded = decode_image(Path(sample.image_path).read_bytes(), LIMITS)
        assert decoded.format == "JPEG"
        assert np.array_equal(decoded.gray, read_gray(sample.image_path))


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return gray_rule(rgb)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "I;16", "I", "CMYK", "P", "1"])
def test_every_pixel_mode_is_handled_not_rejected(mode: str, rgb: np.ndarray) -> None:
    gray = gray_of(rgb)
    alpha = np.full_like(gray, 77)
    if mode == "L":
        image, fmt, expected = Image.fromarray(gray, "L"), "PNG", gray
    elif mode == "LA":
        image, fmt, expected = Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG", gray
    elif mode == "RGBA":
        image, fmt, expected = Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG", gray
    elif mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)  # full 16-bit range
        fmt, expected = "PNG", gray
    elif mode == "I":
        image, fmt, expected = Image.fromarray(gray.astype(np.int32) * 257), "TIFF", gray
    elif mode == "CMYK":
        image, fmt, expected = Image.fromarray(rgb, "RGB").convert("CMYK"), "TIFF", gray
    elif mode == "P":
        image = Image.fromarray(rgb, "RGB").quantize(colors=64)
        fmt, expected = "PNG", gray_of(np.asarray(image.convert("RGB")))
    else:
        image = Image.fromarray(gray, "L").convert("1")
        fmt, expected = "PNG", np.asarray(image.convert("L"))
    assert image.mode == mode
    decoded = decode_image(encode(image, fmt), LIMITS)
    assert decoded.mode == mode
    assert decoded.gray.dtype == np.uint8
    assert np.array_equal(decoded.gray, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_displayed_pixels(orientation: int, rgb: np.ndarray) -> None:
    image = Image.fromarray(rgb, "RGB")
    exif = image.getexif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif)
    displayed = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    decoded = decode_image(data, LIMITS)
    assert decoded.orientation == orientation
    assert (decoded.width, decoded.height) == displayed.size
    assert np.array_equal(decoded.gray, gray_of(np.asarray(displayed)))


def test_an_animated_gif_gives_its_first_frame(rgb: np.ndarray) -> None:
    frames = [Image.fromarray(np.full((20, 30), v, dtype=np.uint8), "L") for v in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue(), LIMITS)
    assert decoded.format == "GIF"
    assert np.all(decoded.gray == 10)


def test_empty_upload() -> None:
    with pytest.raises(EmptyImageError, match="empty"):
        decode_image(b"", LIMITS)


@pytest.mark.parametrize(
    "data",
    [b"hello, this is text, not an image" * 10, bytes(range(256)) * 4],
    ids=["text", "binary"],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImageError, match="not an image in an accepted format"):
        decode_image(data, LIMITS)


def test_formats_outside_the_accepted_list_are_not_opened(rgb: np.ndarray) -> None:
    with pytest.raises(NotAnImageError):
        decode_image(encode(Image.fromarray(rgb, "RGB"), "PPM"), LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(fmt: str, rgb: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb, "RGB"), fmt)
    with pytest.raises(CorruptImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_corrupt_image_data(rgb: np.ndarray) -> None:
    data = bytearray(encode(Image.fromarray(rgb, "RGB"), "PNG"))
    data[60:200] = bytes(140)  # zero the compressed pixel data (CRC no longer matches)
    with pytest.raises(CorruptImageError):
        decode_image(bytes(data), LIMITS)


def test_byte_limit(rgb: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb, "RGB"), "PNG")
    with pytest.raises(ImageTooLargeError, match=f"{len(data)} bytes; the limit is 1000 bytes"):
        decode_image(data, ImageLimits(max_bytes=1000, max_pixels=10**6))


def test_pixel_limit_stops_a_decompression_bomb_before_decoding() -> None:
    bomb = encode(Image.new("L", (5000, 5000)), "PNG")  # 25 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(TooManyPixelsError, match="5000 x 5000 = 25000000 pixels"):
        decode_image(bomb, ImageLimits(max_bytes=10**6, max_pixels=4_000_000))


def test_float_images_are_refused_with_a_reason() -> None:
    image = Image.fromarray(np.full((10, 10), 0.5, dtype=np.float32), "F")
    with pytest.raises(UnsupportedImageError, match="mode F"):
        decode_image(encode(image, "TIFF"), LIMITS)
