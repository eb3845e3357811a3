"""A detector's boxes -> the model's box convention: a per-coordinate mapping and its fit.

The model was evaluated with the 300-W detector boxes; another detector draws
its boxes elsewhere (CenterFace's include the forehead). The mapping moves a
box's centre by a fraction of its size and scales its sides::

    cx' = cx + dx * w     cy' = cy + dy * h     w' = sw * w     h' = sh * h

``fit_box_mapping`` finds the four numbers by least squares on errors measured
in units of the detector box's size, so big and small faces weigh alike.

A detector's fitted mapping is data: a JSON file shipped beside the detector
(``centerface_calibration.json``), written by ``calibration_json`` (the
calibration benchmark, ``python -m bench.calibrate_detector``) and read by the
detector with ``read_calibration``::

    {"box_mapping": {"dx": ..., "dy": ..., "sw": ..., "sh": ...}, "fit": {how it was fitted}}
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray


@dataclass(frozen=True)
class BoxMapping:
    """Centre offsets (fractions of the box's width and height) and side scales."""

    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    def __post_init__(self) -> None:
        if not (self.sw > 0.0 and self.sh > 0.0):
            raise ValueError(f"side scales must be positive, got sw={self.sw}, sh={self.sh}")

    def apply(self, boxes: npt.ArrayLike) -> FloatArray:
        """Mapped boxes, (4,) or (N, 4) [x_min, y_min, x_max, y_max]."""
        b = np.asarray(boxes, dtype=np.float64)
        cx, cy, w, h = _centre_size(b)
        cx, cy = cx + self.dx * w, cy + self.dy * h
        w, h = self.sw * w, self.sh * h
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class CalibrationError(ValueError):
    """A calibration file that cannot be read or does not hold a valid box mapping."""


MAPPING_KEYS = tuple(f.name for f in fields(BoxMapping))


def parse_calibration(text: str, where: str) -> BoxMapping:
    """The box mapping of a calibration file's text; ``where`` names the file in errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CalibrationError(f"{where} is not JSON: {e}") from None
    numbers = data.get("box_mapping") if isinstance(data, dict) else None
    if not isinstance(numbers, dict) or sorted(numbers) != sorted(MAPPING_KEYS):
        raise CalibrationError(
            f"{where}: expected an object with 'box_mapping': {{{', '.join(MAPPING_KEYS)}}}"
        )
    values: dict[str, float] = {}
    for key in MAPPING_KEYS:
        value = numbers[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise CalibrationError(
                f"{where}: box_mapping.{key} must be a finite number, got {value!r}"
            )
        values[key] = float(value)
    try:
        return BoxMapping(**values)
    except ValueError as e:
        raise CalibrationError(f"{where}: {e}") from None


def read_calibration(package: str, name: str) -> BoxMapping:
    """The box mapping in the calibration file ``name`` shipped in ``package``."""
    where = f"{package.replace('.', '/')}/{name}"
    try:
        text = (importlib.resources.files(package) / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"cannot read the calibration {where}: {e}") from None
    return parse_calibration(text, where)


def calibration_json(mapping: BoxMapping, fit: Mapping[str, object]) -> str:
    """A calibration file's text: the mapping (6 decimals) and ``fit``, how it was fitted."""
    numbers = {key: round(value, 6) for key, value in mapping.as_dict().items()}
    return json.dumps({"box_mapping": numbers, "fit": dict(fit)}, indent=2) + "\n"


def _centre_size(b: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    if b.shape[-1] != 4:
        raise ValueError(f"expected boxes (..., 4) [x_min, y_min, x_max, y_max], got {b.shape}")
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, w, h


def fit_box_mapping(detected: npt.ArrayLike, target: npt.ArrayLike) -> BoxMapping:
    """The least-squares ``BoxMapping`` from detector boxes (N, 4) to target boxes (N, 4).

    Each of the four numbers minimises its own squared error in units of the
    detector box: e.g. ``dx`` minimises sum(((tcx - cx) / w - dx)^2), which is
    the mean of those ratios.
    """
    d = np.asarray(detected, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if d.ndim != 2 or d.shape != t.shape or d.shape[0] < 1:
        raise ValueError(f"expected two (N, 4) box arrays of one shape, got {d.shape}, {t.shape}")
    cx, cy, w, h = _centre_size(d)
    tcx, tcy, tw, th = _centre_size(t)
    if not (np.all(w > 0) and np.all(h > 0)):
        raise ValueError("detector boxes must have positive width and height")
    return BoxMapping(
        dx=float(np.mean((tcx - cx) / w)),
        dy=float(np.mean((tcy - cy) / h)),
        sw=float(np.mean(tw / w)),
        sh=float(np.mean(th / h)),
    )


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over union of boxes a (N, 4) and b (M, 4): (N, M)."""
    p = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None]
    q = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None]
    w = np.clip(np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0]), 0, None)
    h = np.clip(np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1]), 0, None)
    inter = w * h
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    area_q = (q[..., 2] - q[..., 0]) * (q[..., 3] - q[..., 1])
    return np.asarray(inter / (area_p + area_q - inter))
