"""A fixed pool of training crops with the frozen earlier stages' outputs computed once.

Training stage k > 1 with stages 1..k-1 frozen, every step runs the frozen stages
forward before the trained one: about a quarter of a stage-2 step on a CPU. With
``--crop-pool K`` such a phase draws K perturbed crops of every training face once
(the reference code's fixed "10 perturbations per image"), runs the frozen stages
over them once, and then draws its batches from the pool: a step runs only the
trained stage, on exactly what it would have seen for those crops (the frozen
stages are in eval mode, so their outputs depend on the crop alone). The price is
variety: the phase sees K crops of each face again and again instead of new ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from model.arrays import FloatArray
from training.augment import CropSampler

log = logging.getLogger(__name__)

# Crops in, (landmarks (B, N, 2), fc1 activations (B, F)) of the last frozen stage out.
FrozenStages = Callable[[npt.NDArray[np.uint8]], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class PooledBatch:
    images: npt.NDArray[np.uint8]  # (B, 1, S, S)
    targets: FloatArray  # (B, N, 2) crop pixels
    shapes: torch.Tensor  # (B, N, 2) float32: the last frozen stage's landmarks
    features: torch.Tensor  # (B, F) float32: its fc1 activations


@dataclass
class CropPool:
    """Crops, their landmarks and the frozen stages' outputs for them, row for row."""

    images: npt.NDArray[np.uint8]  # (M, 1, S, S)
    targets: FloatArray  # (M, N, 2)
    shapes: torch.Tensor  # (M, N, 2)
    features: torch.Tensor  # (M, F)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: np.random.Generator, batch_size: int) -> PooledBatch:
        """A batch of pool rows picked at random (with replacement across batches)."""
        picks = rng.integers(0, len(self), size=batch_size)
        index = torch.from_numpy(picks)
        return PooledBatch(
            self.images[picks], self.targets[picks], self.shapes[index], self.features[index]
        )


def build_crop_pool(
    sampler: CropSampler,
    per_face: int,
    seed: int,
    frozen: FrozenStages,
    chunk: int = 256,
) -> CropPool:
    """``per_face`` crops of each of the sampler's faces (drawn with their own ``seed``, so a
    resumed phase rebuilds the same pool) and the frozen stages' outputs for them."""
    if per_face < 1:
        raise ValueError(f"expected at least one crop per face, got {per_face}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    picks = np.repeat(np.arange(len(sampler.faces)), per_face)
    images, targets = sampler.crops(picks, rng)
    shapes, features = [], []
    for i in range(0, len(images), chunk):
        shape, feature = frozen(images[i : i + chunk])
        shapes.append(shape)
        features.append(feature)
    pool = CropPool(images, targets, torch.cat(shapes), torch.cat(features))
    log.info(
        "crop pool: %d crops (%d per face), frozen stages run over them in %.1f s",
        len(pool),
        per_face,
        time.perf_counter() - started,
    )
    return pool
