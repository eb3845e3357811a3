"""Head pose (yaw, pitch, roll in degrees) from the 68 landmarks and a 3D mean face.

The 3D mean face (``mean_face_3d.json`` beside this module) was derived from
the 300-W training annotations by ``training.face_model`` (rigid factorisation
of the 2012 annotated training faces under scaled orthography, made
mirror-symmetric); like the network's weights it inherits 300-W's licence
(non-commercial research use). Its frame: X from the subject's right to their
left (the image's right in a frontal photo), Y down, Z from the face into the
head; the outer eye corners and the mouth corners lie in one plane of constant
Z, the nose tip in front of it (smaller Z).

Camera model: scaled orthographic (weak perspective), image x to the right, y
down, the camera looking along +Z: landmarks = s * (R @ X)[:2] + t. The pose
is fitted by least squares (an affine start, then Gauss-Newton on the rotation,
scale and shift) and R is decomposed as R = Rz(roll) Ry(-yaw) Rx(-pitch):

- yaw > 0: the face turns toward the image's right (the subject's left);
- pitch > 0: the face turns up (the nose rises in the image);
- roll > 0: the face is rotated clockwise as displayed (the eye on the
  image's right lower than the other).

All three are 0 for a frontal face (the eye-mouth plane facing the camera,
the eye line horizontal). Mirroring an image negates yaw and roll and keeps
pitch; rotating it in its plane by a clockwise angle adds that angle to roll.
numpy only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray
from model.landmarks import NUM_LANDMARKS

MEAN_FACE_PATH = Path(__file__).resolve().parent / "mean_face_3d.json"
ITERATIONS = 20
TOLERANCE = 1e-10  # relative change of the squared residual that ends the refinement


@dataclass(frozen=True)
class HeadPose:
    """Yaw, pitch and roll in degrees (the convention of ``model.pose``) and the fit's scale
    (image pixels per unit of the mean face) and residual (RMS, in image pixels)."""

    yaw: float
    pitch: float
    roll: float
    scale: float
    residual: float


@cache
def mean_face() -> FloatArray:
    """The 3D mean face (68, 3) in the frame of ``model.pose`` (unit: outer-eye-corner distance)."""
    return read_mean_face(MEAN_FACE_PATH)


def read_mean_face(path: Path) -> FloatArray:
    data: dict[str, Any] = json.loads(path.read_text())
    points = np.asarray(data["points"], dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 3) or not np.isfinite(points).all():
        raise ValueError(f"{path}: expected {NUM_LANDMARKS} finite [x, y, z] points")
    return points


def rotation_matrix(yaw: float, pitch: float, roll: float) -> FloatArray:
    """R = Rz(roll) Ry(-yaw) Rx(-pitch), angles in degrees (model -> camera)."""
    a, b, c = math.radians(-yaw), math.radians(-pitch), math.radians(roll)
    ry = np.array(
        [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]]
    )
    rx = np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]]
    )
    rz = np.array(
        [[math.cos(c), -math.sin(c), 0.0], [math.sin(c), math.cos(c), 0.0], [0.0, 0.0, 1.0]]
    )
    return np.asarray(rz @ ry @ rx)


def euler_angles(rotation: npt.ArrayLike) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation R = Rz(roll) Ry(-yaw) Rx(-pitch)."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, float(r[2, 0])))))
    pitch = -math.degrees(math.atan2(float(r[2, 1]), float(r[2, 2])))
    roll = math.degrees(math.atan2(float(r[1, 0]), float(r[0, 0])))
    return yaw, pitch, roll


def project(
    model: FloatArray, rotation: FloatArray, scale: float, shift: npt.ArrayLike
) -> FloatArray:
    """Scaled orthographic projection (N, 2) of model points (N, 3)."""
    return np.asarray(scale * (model @ rotation.T)[:, :2] + np.asarray(shift, dtype=np.float64))


def _nearest_rotation(m: FloatArray) -> FloatArray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return np.asarray(u @ np.diag([1.0, 1.0, d]) @ vt)


def _skew(w: FloatArray) -> FloatArray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _exp_rotation(w: FloatArray) -> FloatArray:
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.asarray(np.eye(3) + _skew(w))
    k = _skew(w / angle)
    return np.asarray(np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k))


def _start(points: FloatArray, model: FloatArray) -> list[tuple[FloatArray, float]]:
    """Rotations and scales to start from: the best affine camera made a scaled rotation, and
    its depth-reversed twin (weak perspective cannot always tell the two apart)."""
    centred = model - model.mean(axis=0)
    target = points - points.mean(axis=0)
    affine, *_ = np.linalg.lstsq(centred, target, rcond=None)  # (3, 2): target = centred @ A
    rows = affine.T  # (2, 3)
    scale = float(np.linalg.norm(rows, axis=1).mean())
    r1 = rows[0] / np.linalg.norm(rows[0])
    r2 = rows[1] - (rows[1] @ r1) * r1
    r2 /= np.linalg.norm(r2)
    rotation = _nearest_rotation(np.stack([r1, r2, np.cross(r1, r2)]))
    flip = np.diag([1.0, 1.0, -1.0])  # the twin keeps R[:2, :2] and reverses the depth terms
    return [(rotation, scale), (flip @ rotation @ flip, scale)]


def _refine(
    points: FloatArray, model: FloatArray, rotation: FloatArray, scale: float
) -> tuple[FloatArray, float, FloatArray, float]:
    """Gauss-Newton on (rotation increment, log scale, shift); returns R, s, t, squared error."""
    n = len(points)
    shift = points.mean(axis=0) - scale * (model @ rotation.T)[:, :2].mean(axis=0)
    r = (project(model, rotation, scale, shift) - points).ravel()
    error = float(r @ r)
    jac = np.zeros((n, 2, 6))
    jac[:, 0, 4] = 1.0
    jac[:, 1, 5] = 1.0
    for _ in range(ITERATIONS):
        a, b, c = (model @ rotation.T).T  # the rotated model's x, y, z (N,)
        # d(R X)/dw_k = e_k x (R X): x rows (0, c, -b), y rows (-c, 0, a); then d/d(log s).
        jac[:, 0, 1], jac[:, 0, 2], jac[:, 0, 3] = scale * c, -scale * b, scale * a
        jac[:, 1, 0], jac[:, 1, 2], jac[:, 1, 3] = -scale * c, scale * a, scale * b
        jac[:, 0, 0] = jac[:, 1, 1] = 0.0
        j = jac.reshape(2 * n, 6)
        try:
            step = np.asarray(np.linalg.solve(j.T @ j, -(j.T @ r)), dtype=np.float64)
        except np.linalg.LinAlgError:
            break
        new_rotation = _exp_rotation(step[:3]) @ rotation
        new_scale = scale * math.exp(float(step[3]))
        new_shift = shift + step[4:]
        new_r = (project(model, new_rotation, new_scale, new_shift) - points).ravel()
        new_error = float(new_r @ new_r)
        if new_error > error:
            break
        converged = error - new_error <= TOLERANCE * max(error, 1e-12)
        rotation, scale, shift, error, r = new_rotation, new_scale, new_shift, new_error, new_r
        if converged:
            break
    return rotation, scale, shift, error


@dataclass(frozen=True)
class CameraFit:
    """A face's scaled orthographic camera: landmarks ~ scale * (rotation @ X)[:2] + shift."""

    rotation: FloatArray  # (3, 3) model -> camera
    scale: float
    shift: FloatArray  # (2,)
    squared_error: float  # sum of squared residuals, pixels^2


def fit_camera(points: npt.ArrayLike, model: npt.ArrayLike) -> CameraFit:
    """The least-squares scaled orthographic camera taking model points (N, 3) onto image points
    (N, 2): an affine start and its depth-reversed twin, each refined, the better kept."""
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(model, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 3 or p.shape != (len(m), 2) or not np.isfinite(p).all():
        raise ValueError(
            f"expected {len(m)} finite [x, y] points for {m.shape} model points, got {p.shape}"
        )
    fits = [CameraFit(*_refine(p, m, rotation, scale)) for rotation, scale in _start(p, m)]
    return min(fits, key=lambda fit: fit.squared_error)


def estimate_pose(landmarks: npt.ArrayLike, model: FloatArray | None = None) -> HeadPose:
    """Head pose of 68 landmarks (68, 2) in image pixels (x right, y down)."""
    face = mean_face() if model is None else np.asarray(model, dtype=np.float64)
    fit = fit_camera(landmarks, face)
    yaw, pitch, roll = euler_angles(fit.rotation)
    return HeadPose(yaw, pitch, roll, fit.scale, math.sqrt(fit.squared_error / len(face)))
