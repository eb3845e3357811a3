"""Test uploads: arrays encoded as PNG, and grey-noise faces for servers that need any image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png(pixels: np.ndarray) -> bytes:
    """``pixels`` (H, W) or (H, W, 3) uint8 as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(seed: int, size: int = 160) -> bytes:
    """A (size, size) grey-noise PNG: a face box on it gets landmarks, detection finds none."""
    return png(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8))
