"""The configuration a DAN is rebuilt from: stored in checkpoints and in the ONNX metadata."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

HeatmapSupport = Literal["radius", "window"]


@dataclass(frozen=True)
class DANConfig:
    """Hyper-parameters of the network (not of training).

    ``heatmap_support`` chooses where equation (3) of the paper is evaluated:
    ``"radius"`` (the paper) within ``heatmap_radius`` px of the nearest
    landmark, zero elsewhere; ``"window"`` (the reference code) in a square of
    half-size ``heatmap_half_size`` around each landmark, landmarks first
    clamped so that their windows stay inside the image.
    """

    num_stages: int = 2
    image_size: int = 112
    num_landmarks: int = 68
    widths: tuple[int, ...] = (64, 128, 256, 512)
    fc_units: int = 256
    dropout: float = 0.5
    heatmap_support: HeatmapSupport = "radius"
    heatmap_radius: float = 16.0
    heatmap_half_size: int = 8
    feature_size: int = field(default=56)

    def __post_init__(self) -> None:
        if self.num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {self.num_stages}")
        if self.image_size % (2 ** len(self.widths)) != 0:
            raise ValueError(
                f"image_size must be divisible by 2**len(widths) = {2 ** len(self.widths)}, "
                f"got {self.image_size}"
            )
        if self.image_size % self.feature_size != 0:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of feature_size "
                f"({self.feature_size})"
            )
        if self.heatmap_support not in ("radius", "window"):
            raise ValueError(
                f"heatmap_support must be 'radius' or 'window', got {self.heatmap_support!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DANConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DANConfig fields {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "widths" in values:
            values["widths"] = tuple(values["widths"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> DANConfig:
        return cls.from_dict(json.loads(text))
