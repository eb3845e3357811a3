"""model.image_transform agrees with an independent cv2.warpAffine of the same similarity."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from model.image_transform import warp_images


def _textured(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 1.5)
    yy, xx = np.mgrid[0:size, 0:size]
    return (noise + 40 * np.sin(xx / 5.0) + 30 * np.cos(yy / 7.0)).astype(np.float32)


def test_warp_matches_cv2_warp_affine() -> None:
    size = 112
    image = _textured(size)
    angle, scale = np.deg2rad(17.0), 1.15
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    m = np.array([[a, -b, 9.5], [b, a, -14.25]])
    expected = cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    A = torch.tensor(m[:, :2], dtype=torch.float32)[None]
    t = torch.tensor(m[:, 2], dtype=torch.float32)[None]
    got = warp_images(torch.from_numpy(image)[None, None], A, t)[0, 0].numpy()
    # cv2 quantises interpolation weights to 1/32: compare with that tolerance, and exactly
    # in the mean.
    diff = np.abs(got - expected)
    assert diff.max() < 0.05 * (image.max() - image.min())
    assert diff.mean() < 0.5
