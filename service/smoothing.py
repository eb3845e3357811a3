"""Temporal smoothing of a tracked face's landmarks: the One Euro filter, scaled to the face.

The One Euro filter (Casiez, Roussel and Vogel, "1 Euro Filter: A Simple Speed-based
Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012) is a first-order
low-pass filter whose cut-off frequency rises with the signal's speed: a still face gets
a low cut-off (jitter removed), a moving one a high cut-off (no lag). Per landmark, with
``te`` the time between two frames::

    alpha(fc)  = 1 / (1 + 1 / (2 pi fc te))
    dx_hat     = alpha(d_cutoff) * (x - x_hat_prev) / te + (1 - alpha(d_cutoff)) * dx_hat_prev
    fc         = min_cutoff + beta * |dx_hat| / scale
    x_hat      = alpha(fc) * x + (1 - alpha(fc)) * x_hat_prev

Two departures from the paper's scalar filter, so one set of parameters fits every face:
the speed is that of each landmark's 2-D position (x and y share one cut-off, so a point
is never dragged along one axis only), and it is measured in inter-ocular distances per
second (``scale`` is the face's inter-ocular distance, outer eye corners), so a face far
from the camera is smoothed as one close to it. Frames are taken as ``1 / rate_hz`` apart
(the stream knows frame numbers, not capture times). The parameters are the service's
settings DAN_STREAM_SMOOTHING_MIN_CUTOFF_HZ (default 1 Hz) and DAN_STREAM_SMOOTHING_BETA
(default 64); ``d_cutoff`` is the paper's 1 Hz. The defaults were chosen on the tracked
landmarks of ``bench.stream``'s test videos (four 300-W photos, 100 frames each): on the
still sequences the frame-to-frame jitter drops to about a quarter (0.26 of it), on the
moving ones the NME grows by 0.02 points (lag); a lower beta smooths a moving face more and
lags more (beta 16: +0.2 points), a lower min_cutoff smooths a still face more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.arrays import FloatArray
from model.landmarks import inter_ocular_distance

DEFAULT_MIN_CUTOFF_HZ = 1.0
DEFAULT_BETA = 64.0  # cut-off Hz added per inter-ocular distance per second of speed
DEFAULT_D_CUTOFF_HZ = 1.0  # of the speed estimate, the paper's advice
NOMINAL_RATE_HZ = 30.0  # frames per second the filter assumes
MIN_SCALE_PX = 1.0


def smoothing_factor(cutoff_hz: float | FloatArray, rate_hz: float) -> float | FloatArray:
    """The exponential-smoothing weight of a first-order low-pass at ``cutoff_hz``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    alpha = 1.0 / (1.0 + tau * rate_hz)
    return float(alpha) if np.ndim(alpha) == 0 else np.asarray(alpha)


@dataclass(frozen=True)
class OneEuroParameters:
    """The filter's parameters: cut-offs in Hz, ``beta`` in Hz per (inter-ocular distance per
    second), the frame rate the filter assumes."""

    min_cutoff_hz: float = DEFAULT_MIN_CUTOFF_HZ
    beta: float = DEFAULT_BETA
    d_cutoff_hz: float = DEFAULT_D_CUTOFF_HZ
    rate_hz: float = NOMINAL_RATE_HZ

    def __post_init__(self) -> None:
        if not (self.min_cutoff_hz > 0 and self.d_cutoff_hz > 0 and self.rate_hz > 0):
            raise ValueError(
                f"cut-offs and the rate must be > 0, got min_cutoff_hz={self.min_cutoff_hz}, "
                f"d_cutoff_hz={self.d_cutoff_hz}, rate_hz={self.rate_hz}"
            )
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


class LandmarkSmoother:
    """One face's One Euro filter over its landmarks (N, 2), one call per frame."""

    def __init__(self, parameters: OneEuroParameters | None = None) -> None:
        self.parameters = parameters or OneEuroParameters()
        self._value: FloatArray | None = None  # x_hat
        self._speed: FloatArray | None = None  # dx_hat, px per second

    @property
    def started(self) -> bool:
        return self._value is not None

    def reset(self) -> None:
        """Forget the past: the next frame passes through unchanged."""
        self._value = None
        self._speed = None

    def __call__(self, points: FloatArray) -> FloatArray:
        """The smoothed landmarks of this frame (the first frame passes through)."""
        x = np.asarray(points, dtype=np.float64)
        p = self.parameters
        if self._value is None or self._speed is None or self._value.shape != x.shape:
            self._value = x.copy()
            self._speed = np.zeros_like(x)
            return x.copy()
        raw_speed = (x - self._value) * p.rate_hz
        a_d = smoothing_factor(p.d_cutoff_hz, p.rate_hz)
        self._speed = a_d * raw_speed + (1.0 - a_d) * self._speed
        scale = max(float(inter_ocular_distance(self._value)), MIN_SCALE_PX)
        cutoff = p.min_cutoff_hz + p.beta * np.linalg.norm(self._speed, axis=-1) / scale
        alpha = np.asarray(smoothing_factor(cutoff, p.rate_hz))[:, None]
        self._value = alpha * x + (1.0 - alpha) * self._value
        return self._value.copy()
