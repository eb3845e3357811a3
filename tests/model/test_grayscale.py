"""model.grayscale: the one rule, equal to the reference code's float mean, for every input."""

from __future__ import annotations

import numpy as np
import pytest

from model.grayscale import gray_from_colour, gray_from_wide, to_gray


def reference_gray(rgb: np.ndarray) -> np.ndarray:
    """The reference code's rule, written out: float32 mean of R, G, B, plus 0.5, truncated."""
    mean = rgb[..., :3].astype(np.float32).mean(axis=-1)
    return np.clip(mean + 0.5, 0, 255).astype(np.uint8)


def every_sum() -> np.ndarray:
    """One (1, 766, 3) row of pixels whose r + g + b takes every value 0..765."""
    sums = np.arange(3 * 255 + 1)
    return np.stack([np.clip(sums - 255 * k, 0, 255) for k in range(3)], axis=-1)[None].astype(
        np.uint8
    )


def test_the_rule_is_the_reference_mean_for_every_sum_and_random_pixels() -> None:
    random = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    for pixels in (every_sum(), random):
        assert np.array_equal(gray_from_colour(pixels), reference_gray(pixels))
        assert np.array_equal(to_gray(pixels), reference_gray(pixels))
    # The mean rounded to the nearest integer (a third never ties).
    sums = every_sum()[0].astype(int).sum(axis=-1)
    assert np.array_equal(gray_from_colour(every_sum())[0], np.round(sums / 3).astype(np.uint8))


def test_channel_order_and_alpha_do_not_matter() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = np.random.default_rng(2).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    gray = to_gray(rgb)
    assert np.array_equal(to_gray(np.ascontiguousarray(rgb[..., ::-1])), gray)  # B, G, R
    assert np.array_equal(to_gray(np.concatenate([rgb, alpha], axis=-1)), gray)  # with alpha
    assert gray.shape == (20, 30) and gray.dtype == np.uint8 and gray.flags.c_contiguous


def test_gray_input_passes_through_and_gray_alpha_drops_its_alpha() -> None:
    gray = np.random.default_rng(3).integers(0, 256, (10, 12), dtype=np.uint8)
    assert np.array_equal(to_gray(gray), gray)
    assert np.array_equal(to_gray(np.dstack([gray, np.full_like(gray, 9)])), gray)
    assert np.array_equal(to_gray(gray[:, :, None]), gray)


def test_16_bit_values_are_scaled_to_8_bits_rounded() -> None:
    wide = np.array([[0, 128, 129, 257 * 100, 65535, 70000, -5]], dtype=np.int64)
    assert gray_from_wide(wide).tolist() == [[0, 0, 1, 100, 255, 255, 0]]
    gray = np.random.default_rng(4).integers(0, 256, (8, 9), dtype=np.uint8)
    assert np.array_equal(to_gray(gray.astype(np.uint16) * 257), gray)  # full 16-bit range
    colour = np.random.default_rng(5).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    assert np.array_equal(to_gray(colour.astype(np.uint16) * 257), to_gray(colour))


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4), dtype=np.float32),
        np.zeros((4, 4, 5), dtype=np.uint8),
        np.zeros((4,), dtype=np.uint8),
    ],
)
def test_what_is_not_an_integer_image_is_refused(pixels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected"):
        to_gray(pixels)
