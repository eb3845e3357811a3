"""training.crop_pool: every face K times, the frozen stages' outputs row for row, the same
pool again from the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from training.augment import CropSampler, Face, Perturbation, make_crop
from training.crop_pool import FrozenStages, build_crop_pool


def faces(mean_shape: np.ndarray, count: int) -> list[Face]:
    """``count`` faces of noise, each with the mean shape moved to a place of its own."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        points = (mean_shape - 55.5) * 2.5 + np.array([120.0 + 10 * i, 110.0])
        image = rng.integers(0, 256, size=(240, 280), dtype=np.uint8)
        out.append(Face(image, points, np.r_[points.min(0), points.max(0)]))
    return out


@pytest.fixture
def stage_one(mean_shape: np.ndarray) -> DAN:
    torch.manual_seed(0)
    model = DAN(DANConfig(widths=(4, 4, 4, 4), fc_units=16), torch.from_numpy(mean_shape).float())
    return model.eval()


def frozen_stage(model: DAN) -> FrozenStages:
    @torch.no_grad()
    def frozen(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        shapes, features = model.forward_features(torch.from_numpy(images), num_stages=1)
        return shapes[-1], features[-1]

    return frozen


def test_each_face_is_in_the_pool_k_times(mean_shape: np.ndarray, stage_one: DAN) -> None:
    still = Perturbation(0.0, 0.0, 0.0, mirror_probability=0.0)  # each crop: the face's own
    three = faces(mean_shape, 3)
    sampler = CropSampler(three, mean_shape, 112, still, seed=0)
    pool = build_crop_pool(sampler, 4, seed=5, frozen=frozen_stage(stage_one))
    assert len(pool) == 12 and pool.images.shape == (12, 1, 112, 112)
    for i, face in enumerate(three):
        crop, landmarks = make_crop(face, mean_shape, 112)
        for row in range(4 * i, 4 * i + 4):
            np.testing.assert_array_equal(pool.images[row, 0], crop)
            np.testing.assert_allclose(pool.targets[row], landmarks)


def test_the_pool_carries_the_frozen_stages_outputs_row_for_row(
    mean_shape: np.ndarray, stage_one: DAN
) -> None:
    sampler = CropSampler(faces(mean_shape, 3), mean_shape, 112, Perturbation(), seed=0)
    before = sampler.rng.bit_generator.state
    frozen = frozen_stage(stage_one)
    pool = build_crop_pool(sampler, 4, seed=5, frozen=frozen, chunk=5)  # chunks of 5, 5, 2
    assert sampler.rng.bit_generator.state == before  # the sampler's own draws are untouched
    assert len({round(float(t[0, 0]), 3) for t in pool.targets}) == 12  # perturbed: all differ
    expected_shapes, expected_features = frozen(pool.images)  # one chunk: float noise only
    torch.testing.assert_close(pool.shapes, expected_shapes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pool.features, expected_features, rtol=1e-4, atol=1e-4)

    again = build_crop_pool(sampler, 4, seed=5, frozen=frozen)
    np.testing.assert_array_equal(again.images, pool.images)
    np.testing.assert_array_equal(again.targets, pool.targets)

    batch = pool.sample(np.random.default_rng(1), 6)
    assert batch.images.shape == (6, 1, 112, 112) and batch.shapes.shape == (6, 68, 2)
    rows = [
        int(np.flatnonzero((pool.images == image).all(axis=(1, 2, 3)))[0]) for image in batch.images
    ]
    torch.testing.assert_close(batch.shapes, pool.shapes[rows])
    torch.testing.assert_close(batch.features, pool.features[rows])
    np.testing.assert_array_equal(batch.targets, pool.targets[rows])


def test_a_pool_needs_a_crop_per_face(mean_shape: np.ndarray, stage_one: DAN) -> None:
    sampler = CropSampler(faces(mean_shape, 1), mean_shape, 112, Perturbation(), seed=0)
    with pytest.raises(ValueError, match="expected at least one crop per face, got 0"):
        build_crop_pool(sampler, 0, seed=0, frozen=lambda images: (torch.zeros(0), torch.zeros(0)))
