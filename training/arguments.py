"""Range-checked argparse value types for the command lines of ``training`` and ``bench``.

``type=int`` takes ``--epochs -3`` and the tool fails later, or worse, runs; these types refuse
such a value when the command line is parsed, with a message that names what was expected and
what came (``argument --epochs: expected a whole number >= 1, got -3``). Torch-free.
``training.train``'s flags are checked by ``training.config.TrainConfig`` instead, which also
checks files of flags and resumed runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _whole(text: str, low: int, high: float = math.inf) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        span = f">= {low}" if high == math.inf else f"in [{low}, {high:g}]"
        raise argparse.ArgumentTypeError(f"expected a whole number {span}, got {text!r}")
    return value


def _real(text: str, low: float, high: float, low_open: bool, high_open: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if math.isnan(value) or below or above:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise argparse.ArgumentTypeError(f"expected a number in {span}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts: epochs, repeats, images)."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (where 0 means "all" or "none": threads, limits, seeds)."""
    return _whole(text, 0)


def positive_ints(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers >= 1, at least one (batch sizes, concurrency levels)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers >= 1, got {text!r}"
        )
    return values


def positive_float(text: str) -> float:
    """A finite number > 0 (durations, learning rates, scales)."""
    return _real(text, 0.0, math.inf, low_open=True, high_open=True)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (errors, widths of perturbations)."""
    return _real(text, 0.0, math.inf, low_open=False, high_open=True)


def whole_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high] (sizes, qualities with both bounds)."""

    def whole(text: str) -> int:
        return _whole(text, low, high)

    whole.__name__ = f"whole_in_{low}_{high}"
    return whole


def real_in(low: float, high: float) -> Callable[[str], float]:
    """A number in [low, high] (ratios with both bounds)."""

    def real(text: str) -> float:
        return _real(text, low, high, low_open=False, high_open=False)

    real.__name__ = f"real_in_{low:g}_{high:g}"
    return real


jpeg_quality = whole_in(1, 100)
"""A JPEG quality, 1 to 100."""


def fraction(text: str) -> float:
    """A number in [0, 1] (shares, thresholds on a probability)."""
    return _real(text, 0.0, 1.0, low_open=False, high_open=False)
