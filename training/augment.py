"""Training crops: random mirroring, similarity perturbations of the initial shape, appearance.

A training crop is made as at test time (``model.crop``: the mean shape
placed in a face box, the similarity from it to S0, a bilinear warp), except
that the initial shape is first perturbed by a random similarity about its
centre: rotation ~ N(0, rotation_sd), scale ~ N(1, scale_sd), translation ~
N(0, translation_sd x the face's width / height). The translation is relative
to the face, as the paper intends (the reference code draws it in 112-frame
pixels but applies it in image pixels, which shrinks it for large faces; we do
not reproduce that).

Appearance changes (off unless asked for) then act on the crop's pixels only,
never on the landmarks: contrast ~ N(1, contrast_sd) about the crop's mean
grey, brightness ~ N(0, brightness_sd x 255), a Gaussian blur (sigma 0.5-1.5
pixels) with blur_probability, grey noise ~ N(0, noise_sd x 255), and with
occlusion_probability one rectangle of random grey (10-40% of the side per
axis). They draw random numbers only when enabled, so a run without them
reproduces one made before they existed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray, GrayImage
from model.crop import crop_transform, initial_shape_from_box, warp_crop
from model.geometry import apply_affine, bounding_box
from model.landmarks import mirror_landmarks


@dataclass(frozen=True)
class Perturbation:
    rotation_sd_deg: float = 20.0
    scale_sd: float = 0.25
    translation_sd: float = 0.1  # fraction of the face's width (x) and height (y)
    min_scale: float = 0.5
    mirror_probability: float = 0.5


@dataclass(frozen=True)
class Appearance:
    """Pixel-level changes of a training crop; all zero (off) by default."""

    brightness_sd: float = 0.0  # additive, fraction of 255
    contrast_sd: float = 0.0  # multiplicative about the crop's mean, mean 1
    blur_probability: float = 0.0
    noise_sd: float = 0.0  # fraction of 255
    occlusion_probability: float = 0.0

    @property
    def enabled(self) -> bool:
        return any(v > 0 for v in dataclasses.astuple(self))


def change_appearance(crop: GrayImage, rng: np.random.Generator, a: Appearance) -> GrayImage:
    """The crop (S, S) uint8 with the appearance changes of ``a`` drawn from ``rng``."""
    if not a.enabled:
        return crop
    x: npt.NDArray[np.float32] = crop.astype(np.float32)
    if a.contrast_sd > 0:
        factor = max(0.2, rng.normal(1.0, a.contrast_sd))
        x = ((x - x.mean()) * factor + x.mean()).astype(np.float32)
    if a.brightness_sd > 0:
        x = x + np.float32(rng.normal(0.0, a.brightness_sd * 255.0))
    if a.blur_probability > 0 and rng.random() < a.blur_probability:
        x = np.asarray(cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(0.5, 1.5)), np.float32)
    if a.noise_sd > 0:
        x = x + rng.normal(0.0, a.noise_sd * 255.0, size=x.shape).astype(np.float32)
    if a.occlusion_probability > 0 and rng.random() < a.occlusion_probability:
        side = x.shape[0]
        h, w = (rng.uniform(0.1, 0.4, size=2) * side).astype(int)
        top, left = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
        x[top : top + h, left : left + w] = rng.uniform(0.0, 255.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass
class Face:
    """A decoded training face: grayscale image, its landmarks and face box."""

    image: GrayImage
    landmarks: FloatArray  # (68, 2)
    box: FloatArray  # (4,)

    def mirrored(self) -> Face:
        width = self.image.shape[1]
        x0, y0, x1, y1 = self.box
        return Face(
            np.ascontiguousarray(self.image[:, ::-1]),
            np.asarray(mirror_landmarks(self.landmarks, width), dtype=np.float64),
            np.array([width - 1 - x1, y0, width - 1 - x0, y1]),
        )


def perturb_shape(shape: FloatArray, rng: np.random.Generator, p: Perturbation) -> FloatArray:
    """A random similarity of a shape about its bounding-box centre."""
    x0, y0, x1, y1 = bounding_box(shape)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    angle = math.radians(rng.normal(0.0, p.rotation_sd_deg))
    scale = max(p.min_scale, rng.normal(1.0, p.scale_sd))
    shift = rng.normal(0.0, p.translation_sd, size=2) * np.array([x1 - x0, y1 - y0])
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    rot = np.array([[c, -s], [s, c]])
    return np.asarray((shape - centre) @ rot.T + centre + shift)


def make_crop(
    face: Face,
    mean_shape: FloatArray,
    size: int,
    rng: np.random.Generator | None = None,
    perturbation: Perturbation | None = None,
) -> tuple[GrayImage, FloatArray]:
    """Crop (size, size) and the landmarks (68, 2) in crop pixels; perturbed if rng is given."""
    initial = initial_shape_from_box(mean_shape, face.box)
    if rng is not None:
        initial = perturb_shape(initial, rng, perturbation or Perturbation())
    transform = crop_transform(initial, mean_shape)
    return warp_crop(face.image, transform, size), apply_affine(transform, face.landmarks)


class CropSampler:
    """Draws batches of freshly perturbed crops (the online equivalent of 10 per image)."""

    def __init__(
        self,
        faces: Sequence[Face],
        mean_shape: FloatArray,
        size: int,
        perturbation: Perturbation,
        seed: int,
        appearance: Appearance | None = None,
    ) -> None:
        if not faces:
            raise ValueError("expected at least one training face")
        self.faces = list(faces)
        self.mirrors = [f.mirrored() for f in faces] if perturbation.mirror_probability > 0 else []
        self.mean_shape = mean_shape
        self.size = size
        self.perturbation = perturbation
        self.appearance = appearance or Appearance()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[npt.NDArray[np.uint8], FloatArray]:
        """Crops (B, 1, S, S) uint8 and landmarks (B, 68, 2) of randomly picked faces."""
        return self.crops(self.rng.integers(0, len(self.faces), size=batch_size), self.rng)

    def crops(
        self, picks: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.uint8], FloatArray]:
        """Perturbed crops (B, 1, S, S) uint8 and landmarks (B, 68, 2) of the faces ``picks``
        (indices), each mirrored with the perturbation's probability."""
        images = np.empty((len(picks), 1, self.size, self.size), dtype=np.uint8)
        targets = np.empty((len(picks), self.faces[0].landmarks.shape[0], 2))
        flips = rng.random(len(picks)) < self.perturbation.mirror_probability
        for i, (k, flip) in enumerate(zip(picks, flips, strict=True)):
            face = self.mirrors[k] if flip else self.faces[k]
            crop, targets[i] = make_crop(face, self.mean_shape, self.size, rng, self.perturbation)
            images[i, 0] = change_appearance(crop, rng, self.appearance)
        return images, targets
