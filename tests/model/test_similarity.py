"""model.similarity: transform estimation, its inverse and the landmark transform."""

from __future__ import annotations

import math

import torch

from model.similarity import estimate_similarity, invert_similarity, transform_points


def _random_similarities(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    angle = (torch.rand(batch, generator=gen) - 0.5) * 2 * math.pi
    scale = 0.5 + torch.rand(batch, generator=gen) * 1.5
    a, b = scale * torch.cos(angle), scale * torch.sin(angle)
    A = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)
    t = torch.randn(batch, 2, generator=gen) * 30
    return A.double(), t.double()


def test_estimate_recovers_a_random_similarity_exactly() -> None:
    gen = torch.Generator().manual_seed(0)
    src = (torch.rand(5, 68, 2, generator=gen) * 112).double()
    A, t = _random_similarities(5, gen)
    dst = transform_points(src, A, t)
    # estimate_similarity works in fp32: exact up to fp32 rounding.
    A_hat, t_hat = estimate_similarity(src, dst)
    torch.testing.assert_close(A_hat.double(), A, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t_hat.double(), t, atol=1e-3, rtol=1e-5)


def test_inverse_undoes_the_transform() -> None:
    gen = torch.Generator().manual_seed(1)
    A, t = _random_similarities(4, gen)
    pts = torch.rand(4, 68, 2, generator=gen).double() * 112
    A_inv, t_inv = invert_similarity(A, t)
    torch.testing.assert_close(transform_points(transform_points(pts, A, t), A_inv, t_inv), pts)


def test_estimate_against_a_shared_target_shape() -> None:
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(68, 2, generator=gen) * 112
    A, t = _random_similarities(3, gen)
    A_inv, t_inv = invert_similarity(A, t)
    src = transform_points(target.double().expand(3, 68, 2), A_inv, t_inv)
    A_hat, t_hat = estimate_similarity(src, target)
    torch.testing.assert_close(
        transform_points(src.float(), A_hat, t_hat), target.expand(3, 68, 2), atol=1e-3, rtol=0
    )
