"""The Deep Alignment Network: any number of stages joined by the connection layers.

Stage 1 sees the normalised crop and starts from the mean shape S0. Stage t > 1
sees the crop warped by the similarity T_t that takes S_{t-1} onto S0, the
heatmap of T_t(S_{t-1}) and the feature image of stage t-1, and outputs
S_t = T_t^-1(T_t(S_{t-1}) + dS_t). All coordinates are crop pixels with the
centre of the top-left pixel at (0, 0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import DANConfig
from model.feature_image import FeatureImage
from model.heatmap import landmark_heatmap
from model.image_transform import warp_images
from model.similarity import estimate_similarity, invert_similarity, transform_points
from model.stage import StageNetwork


class Connection(nn.Module):
    """What joins stage t-1 to stage t: transform, image, heatmap and feature image."""

    def __init__(self, config: DANConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_image = FeatureImage(config.fc_units, config.feature_size, config.image_size)
        self.input_norm = nn.BatchNorm2d(3)

    def forward(
        self, image: Tensor, shape: Tensor, fc1: Tensor, mean_shape: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns the next stage's input (B, 3, S, S), T(shape) (B, N, 2) and T as (A, t)."""
        c = self.config
        with torch.autocast(device_type=image.device.type, enabled=False):
            A, t = estimate_similarity(shape, mean_shape)  # (B, 2, 2), (B, 2)
            warped = warp_images(image, A, t)  # (B, 1, S, S)
            aligned = transform_points(shape.float(), A, t)  # (B, N, 2)
            heat = landmark_heatmap(
                aligned, c.image_size, c.heatmap_support, c.heatmap_radius, c.heatmap_half_size
            )  # (B, 1, S, S)
        feature = self.feature_image(fc1).float()  # (B, 1, S, S)
        x = self.input_norm(torch.cat([warped, heat, feature], dim=1))  # (B, 3, S, S)
        return x, aligned, A, t


class DAN(nn.Module):
    """Deep Alignment Network. ``forward`` maps raw grayscale crops to every stage's landmarks."""

    mean_shape: Tensor
    mean_image: Tensor
    std_image: Tensor

    def __init__(
        self,
        config: DANConfig,
        mean_shape: Tensor | None = None,
        mean_image: Tensor | None = None,
        std_image: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        S, N = config.image_size, config.num_landmarks
        # Without a mean shape (a model about to load a state dict) a placeholder ring stands in.
        angles = torch.arange(N) * (2 * torch.pi / N)
        ring = (S - 1) / 2 + (S / 4) * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        self.register_buffer("mean_shape", _or_default(mean_shape, (N, 2), ring))
        self.register_buffer("mean_image", _or_default(mean_image, (S, S), torch.zeros(S, S)))
        self.register_buffer("std_image", _or_default(std_image, (S, S), torch.ones(S, S)))
        self.stages = nn.ModuleList(
            StageNetwork(
                in_channels=1 if i == 0 else 3,
                image_size=S,
                widths=config.widths,
                fc_units=config.fc_units,
                num_landmarks=N,
                dropout=config.dropout,
            )
            for i in range(config.num_stages)
        )
        self.connections = nn.ModuleList(Connection(config) for _ in range(config.num_stages - 1))
        self.frozen_stages: set[int] = set()
        self.batch_norm_frozen = False

    def normalise(self, images: Tensor) -> Tensor:
        """Raw grayscale crops (B, 1, S, S) in [0, 255] -> per-pixel standardised."""
        return (images.float() - self.mean_image) / self.std_image

    def forward(
        self,
        images: Tensor,
        num_stages: int | None = None,
        given: tuple[int, Tensor, Tensor] | None = None,
    ) -> list[Tensor]:
        """Landmarks (B, N, 2) after each of the first ``num_stages`` stages (default: all);
        with ``given``, of the stages after the given ones only (see ``forward_features``)."""
        shapes, _ = self.forward_features(images, num_stages, given)
        return shapes

    def forward_features(
        self,
        images: Tensor,
        num_stages: int | None = None,
        given: tuple[int, Tensor, Tensor] | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Each stage's landmarks (B, N, 2) and fc1 activations (B, fc_units), first ``num_stages``.

        The fc1 activations are what a stage passes on (its feature image); the confidence head
        of ``training.confidence`` reads them. ``given = (k, landmarks, fc1)``: the outputs of
        the first k stages, computed before (``training.crop_pool`` caches those of frozen
        stages); only stages k + 1 .. ``num_stages`` run, and only theirs are returned.
        """
        n = self.config.num_stages if num_stages is None else num_stages
        if not 1 <= n <= self.config.num_stages:
            raise ValueError(f"num_stages must be in [1, {self.config.num_stages}], got {n}")
        image = self.normalise(images)  # (B, 1, S, S)
        if given is None:
            ds, fc1 = self.stages[0](image)
            shape = self.mean_shape + ds  # (B, N, 2)
            done, shapes, features = 1, [shape], [fc1]
        else:
            done, shape, fc1 = given
            if not 1 <= done < n:
                raise ValueError(f"given outputs of stage k need 1 <= k < {n} stages, got {done}")
            shapes, features = [], []
        for stage, connection in zip(
            self.stages[done:n], self.connections[done - 1 : n - 1], strict=True
        ):
            x, aligned, A, t = connection(image, shape, fc1, self.mean_shape)
            ds, fc1 = stage(x)
            A_inv, t_inv = invert_similarity(A, t)
            shape = transform_points(aligned + ds, A_inv, t_inv)  # (B, N, 2)
            shapes.append(shape)
            features.append(fc1)
        return shapes, features

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """What stage ``stage`` (0-based) is made of: its network and, after the first, the
        connection layers into it."""
        return [self.stages[stage], *([self.connections[stage - 1]] if stage > 0 else [])]

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """Parameters trained with stage ``stage`` (0-based): its network and its connection."""
        return [p for part in self.stage_modules(stage) for p in part.parameters()]

    def freeze_stage(self, stage: int, frozen: bool = True) -> None:
        """Stop (or restart) gradient updates of one stage; frozen stages also stay in eval mode."""
        for p in self.stage_parameters(stage):
            p.requires_grad_(not frozen)
        if frozen:
            self.frozen_stages.add(stage)
        else:
            self.frozen_stages.discard(stage)
        self.train(self.training)

    def freeze_batch_norm(self, frozen: bool = True) -> None:
        """Keep every batch normalisation in eval mode (its running statistics) in training too;
        the weights still train. For fine-tuning stages whose statistics are already right."""
        self.batch_norm_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> DAN:
        super().train(mode)
        # A frozen stage keeps its batch-norm statistics and has no dropout.
        for stage in self.frozen_stages:
            for part in self.stage_modules(stage):
                part.eval()
        if self.batch_norm_frozen:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def _or_default(value: Tensor | None, shape: tuple[int, ...], default: Tensor) -> Tensor:
    if value is None:
        return default
    if tuple(value.shape) != shape:
        raise ValueError(f"expected a tensor of shape {shape}, got {tuple(value.shape)}")
    return value.detach().float().clone()
