"""Derive the 3D mean face of ``model.pose`` from the 300-W training annotations.

    python -m training.face_model --data-root ../shared/data/300w --out model/mean_face_3d.json

Structure from motion over the annotated training faces (each also mirrored,
so that the data are left-right symmetric): the faces' centred, scale-
normalised 68-point annotations are stacked into one measurement matrix and
factorised at rank 3 (Tomasi and Kanade, 1992) with the metric upgrade of
scaled orthography (each face's camera rows orthogonal and of equal length);
then the shape and the per-face cameras are refined in turns (each camera by
``model.pose.fit_camera``, each point by linear least squares). The result is
put in ``model.pose``'s frame (X along the outer eye corners toward the
subject's left, Y down in the plane of the outer eye and mouth corners, Z into
the head, nose in front), made exactly mirror-symmetric, centred on its
centroid and scaled to an outer-eye-corner distance of 1.

The numbers come from the 300-W annotations (non-commercial research use
only), so the 3D face inherits that licence, as the network's weights do.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from model.arrays import FloatArray
from model.landmarks import MIRROR_PERMUTATION, NOSE_BASE, OUTER_EYE_CORNERS, mirror_landmarks
from model.pose import fit_camera
from training.arguments import non_negative_int
from training.dataset import load_split

log = logging.getLogger("training.face_model")

MOUTH_CORNERS = (48, 54)
NOSE_TIP = 30
REFINEMENTS = 5
DECIMALS = 5
SOURCE = (
    "Derived by training.face_model from the 68-point annotations of the 300-W training images "
    "(AFW, LFPW train, HELEN train; {faces} faces, each also mirrored): rank-3 factorisation "
    "with the scaled-orthographic metric upgrade, {refinements} rounds of camera / shape "
    "refinement, made mirror-symmetric."
)
LICENCE = (
    "Derived from the 300-W annotations, which are for non-commercial research use only; this "
    "3D face inherits that restriction (as the model weights do)."
)
FRAME = (
    "X from the subject's right to their left, Y down, Z from the face into the head (the nose "
    "tip has the smallest Z); the outer eye corners and mouth corners share one Z; origin at the "
    "centroid of the 68 points; unit: the outer-eye-corner distance (points 37 and 46, 1-based)."
)


def measurements(shapes: FloatArray) -> FloatArray:
    """Faces (F, N, 2) centred and scaled to unit RMS radius: the rows of W (2F, N)."""
    centred = shapes - shapes.mean(axis=1, keepdims=True)
    radius = np.sqrt((centred**2).sum(axis=(1, 2)) / shapes.shape[1])
    normed = centred / radius[:, None, None]
    return np.asarray(np.concatenate([normed[:, :, 0], normed[:, :, 1]], axis=0))


def factorise(w: FloatArray) -> FloatArray:
    """The shape (N, 3) of rank-3 factorisation with the scaled-orthographic metric upgrade."""
    faces = w.shape[0] // 2
    u, sigma, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(sigma[:3])
    motion = u[:, :3] * root  # (2F, 3)
    shape = root[:, None] * vt[:3]  # (3, N)
    rows_x, rows_y = motion[:faces], motion[faces:]

    def terms(a: FloatArray, b: FloatArray) -> FloatArray:
        """Coefficients of a^T L b in the six unknowns of the symmetric L."""
        return np.stack(
            [
                a[:, 0] * b[:, 0],
                a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0],
                a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                a[:, 1] * b[:, 1],
                a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1],
                a[:, 2] * b[:, 2],
            ],
            axis=1,
        )

    # |m_x|^2 = |m_y|^2 and m_x . m_y = 0 for each face; the mean |m_x|^2 fixes the scale.
    equations = np.concatenate(
        [terms(rows_x, rows_x) - terms(rows_y, rows_y), terms(rows_x, rows_y)]
    )
    norm = terms(rows_x, rows_x).mean(axis=0, keepdims=True)
    a = np.concatenate([equations, norm])
    b = np.concatenate([np.zeros(len(equations)), [1.0]])
    l6, *_ = np.linalg.lstsq(a, b, rcond=None)
    gram = np.array(
        [[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]], dtype=np.float64
    )
    values, vectors = np.linalg.eigh(gram)
    if values.min() <= 0:
        log.warning(
            "metric upgrade: L = Q Q^T not positive definite (eigenvalues %s); clipped", values
        )
    q = vectors @ np.diag(np.sqrt(np.clip(values, 1e-9, None)))
    return np.asarray((np.linalg.inv(q) @ shape).T)


def refine(shapes: FloatArray, shape: FloatArray, rounds: int) -> tuple[FloatArray, float]:
    """Alternate per-face cameras and per-point least squares; the shape and the RMS residual
    (in units of each face's RMS radius)."""
    w = measurements(shapes)
    faces = shapes.shape[0]
    points = np.stack([w[:faces], w[faces:]], axis=-1)  # (F, N, 2), normalised
    rms = math.nan
    for round_ in range(rounds):
        fits = [fit_camera(p, shape) for p in points]
        rms = math.sqrt(sum(f.squared_error for f in fits) / points[..., 0].size)
        log.info("refinement %d: RMS residual %.4f (face radius 1)", round_, rms)
        cameras = np.stack([f.scale * f.rotation[:2] for f in fits])  # (F, 2, 3)
        shifts = np.stack([f.shift for f in fits])  # (F, 2)
        a = cameras.reshape(-1, 3)  # (2F, 3)
        targets = (points - shifts[:, None, :]).transpose(1, 0, 2).reshape(len(shape), -1)
        shape = np.asarray(np.linalg.lstsq(a, targets.T, rcond=None)[0].T)  # (N, 3)
    return shape, rms


def canonical(shape: FloatArray) -> FloatArray:
    """The shape in ``model.pose``'s frame, mirror-symmetric, centred, eye-corner distance 1."""
    perm = list(MIRROR_PERMUTATION)
    s = shape - shape.mean(axis=0)
    right, left = OUTER_EYE_CORNERS
    # The symmetry plane's normal: the mean direction from each point's mirror twin to it, for
    # the points on the subject's left (the second of each pair in the eye-corner order).
    differences = s - s[perm]
    sign = np.sign(differences @ (s[left] - s[right]))
    x_axis = (differences * sign[:, None]).sum(axis=0)
    x_axis /= np.linalg.norm(x_axis)
    mouth = s[list(MOUTH_CORNERS)].mean(axis=0)
    eyes = s[list(OUTER_EYE_CORNERS)].mean(axis=0)
    down = mouth - eyes
    y_axis = down - (down @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    s = s @ np.stack([x_axis, y_axis, z_axis]).T
    if s[NOSE_TIP, 2] > s[list(OUTER_EYE_CORNERS), 2].mean():  # depth reversed: reflect it
        s[:, 2] *= -1.0
    mirrored = s[perm] * np.array([-1.0, 1.0, 1.0])
    s = (s + mirrored) / 2.0
    # The eye and mouth corners at one depth: turn about X so that their mean depths agree.
    dy = s[list(MOUTH_CORNERS), 1].mean() - s[list(OUTER_EYE_CORNERS), 1].mean()
    dz = s[list(MOUTH_CORNERS), 2].mean() - s[list(OUTER_EYE_CORNERS), 2].mean()
    angle = math.atan2(dz, dy)
    c, si = math.cos(angle), math.sin(angle)
    turn = np.array([[1.0, 0.0, 0.0], [0.0, c, si], [0.0, -si, c]])
    s = s @ turn.T
    s -= s.mean(axis=0)
    return np.asarray(s / np.linalg.norm(s[left] - s[right]))


def derive(data_root: Path, rounds: int = REFINEMENTS) -> tuple[FloatArray, dict[str, Any]]:
    """The 3D mean face (68, 3) and what to record about its derivation."""
    samples = load_split(data_root, "training").samples
    if not samples:
        raise SystemExit(f"no training annotations under {data_root}")
    shapes = np.stack([s.landmarks for s in samples])
    # Mirroring needs no image width: the shapes are centred in measurements().
    mirrored = np.stack([mirror_landmarks(s, 0) for s in shapes])
    both = np.concatenate([shapes, mirrored])
    shape = factorise(measurements(both))
    shape, rms = refine(both, canonical(shape), rounds)
    face = canonical(shape)
    nose_depth = float(face[list(OUTER_EYE_CORNERS), 2].mean() - face[NOSE_TIP, 2])
    info = {
        "source": SOURCE.format(faces=len(samples), refinements=rounds),
        "licence": LICENCE,
        "frame": FRAME,
        "faces": len(samples),
        "rms_residual": round(rms, 5),
        "nose_tip_in_front_of_eye_corners": round(nose_depth, 4),
        "nose_base_width": round(
            float(np.linalg.norm(face[NOSE_BASE[-1]] - face[NOSE_BASE[0]])), 4
        ),
    }
    return face, info


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-root", type=Path, default=Path("../shared/data/300w"), help="300-W root")
    p.add_argument(
        "--out", type=Path, default=Path("model/mean_face_3d.json"), help="JSON file to write"
    )
    p.add_argument(
        "--rounds", type=non_negative_int, default=REFINEMENTS, help="camera / shape refinements"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    face, info = derive(args.data_root, args.rounds)
    document = {**info, "points": np.round(face, DECIMALS).tolist()}
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    log.info("wrote %s: %s", args.out, {k: v for k, v in info.items() if k != "source"})


if __name__ == "__main__":
    main()
