"""A small synthetic 300-W tree in the official layout, for the tests when the real data is absent.

``write_synthetic_300w(root)`` writes a few images of each basic subset of the
paper's training and common-test splits (``afw/``, ``lfpw/trainset``,
``helen/trainset``, ``lfpw/testset``, ``helen/testset``): colour JPEGs of a
drawn face (head, brows, eyes, nose, mouth, jaw line) whose 68 iBUG points
(``.pts`` beside each image, 1-based) sit on the drawing, and a ``boxes.csv``
of face boxes (1-based) around them. Shapes vary (pose, scale, expression);
image sizes too (not all square). The tree is the same on every run.

It is enough for the code paths (loading, cropping, decoding, serving,
benchmarks, training steps), not for accuracy: no trained model or face
detector is meant to work on these faces.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.landmarks import (
    INNER_LIP,
    JAW,
    LEFT_BROW,
    LEFT_EYE,
    NOSE_BASE,
    NOSE_BRIDGE,
    OUTER_LIP,
    RIGHT_BROW,
    RIGHT_EYE,
)

# Images per folder (relative to the root): the basic subsets of training and common test;
# enough for the conftest's test_faces (3 + 2 common-test faces) and mini_300w (6, 6 and 3).
FOLDERS: dict[str, tuple[str, ...]] = {
    "afw": tuple(f"{1000000001 + i}_1" for i in range(6)),
    "lfpw/trainset": tuple(f"image_{i:04d}" for i in range(1, 7)),
    "helen/trainset": tuple(f"{100000001 + i}_1" for i in range(3)),
    "lfpw/testset": tuple(f"image_{i:04d}" for i in range(1, 5)),
    "helen/testset": tuple(f"{200000001 + i}_1" for i in range(3)),
}
SEED = 300


def template_shape() -> np.ndarray:
    """A frontal face's 68 points (iBUG order) in a unit frame: x right, y down, the jaw from
    x = -1 to 1, eyes at y = -0.25; left-right symmetric under the mirror permutation."""
    angles = np.pi - np.pi * np.arange(17) / 16
    jaw = np.stack([np.cos(angles), -0.25 + 1.25 * np.sin(angles)], axis=1)
    right_brow = [[-0.85, -0.50], [-0.68, -0.60], [-0.50, -0.63], [-0.33, -0.61], [-0.15, -0.55]]
    bridge = [[0.0, -0.30], [0.0, -0.15], [0.0, 0.0], [0.0, 0.15]]
    base = [[-0.20, 0.25], [-0.10, 0.28], [0.0, 0.30], [0.10, 0.28], [0.20, 0.25]]
    right_eye = [[-0.59, -0.25], [-0.48, -0.31], [-0.36, -0.31], [-0.25, -0.25], [-0.36, -0.19]]
    right_eye.append([-0.48, -0.19])
    left_eye = [[0.25, -0.25], [0.36, -0.31], [0.48, -0.31], [0.59, -0.25], [0.48, -0.19]]
    left_eye.append([0.36, -0.19])
    outer_top = [[-0.36, 0.55], [-0.24, 0.49], [-0.10, 0.46], [0.0, 0.48]]
    outer_top += [[0.10, 0.46], [0.24, 0.49], [0.36, 0.55]]
    outer_bottom = [[0.24, 0.64], [0.10, 0.68], [0.0, 0.69], [-0.10, 0.68], [-0.24, 0.64]]
    inner = [[-0.30, 0.55], [-0.10, 0.53], [0.0, 0.535], [0.10, 0.53], [0.30, 0.55]]
    inner += [[0.10, 0.58], [0.0, 0.585], [-0.10, 0.58]]
    left_brow = [[-x, y] for x, y in reversed(right_brow)]
    points = np.concatenate(
        [
            jaw,
            right_brow,
            left_brow,
            bridge,
            base,
            right_eye,
            left_eye,
            outer_top,
            outer_bottom,
            inner,
        ]
    )
    assert points.shape == (68, 2)
    return np.asarray(points, dtype=np.float64)


def face_shape(rng: np.random.Generator) -> np.ndarray:
    """The template with an expression (mouth, brows) and a little noise, still in unit frame."""
    points = template_shape()
    mouth = list(OUTER_LIP[7:]) + list(INNER_LIP[5:])  # the lower lip
    points[mouth, 1] += rng.uniform(0.0, 0.08)
    points[[*RIGHT_BROW, *LEFT_BROW], 1] -= rng.uniform(0.0, 0.06)
    points[:, 0] *= rng.uniform(0.9, 1.1)  # narrower or wider faces
    return points + rng.normal(0.0, 0.012, points.shape)


def _draw(shape: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A BGR image (H, W, 3) of a face drawn on ``shape`` (68, 2) in pixels, 0-based."""
    height, width = size
    coarse = rng.uniform(40, 120, (6, 6)).astype(np.float32)
    gray = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    eye_distance = float(np.linalg.norm(shape[45] - shape[36]))
    unit = eye_distance / 1.18  # template units in pixels

    def pixel(points: np.ndarray) -> np.ndarray:
        return np.round(points * 16).astype(np.int32)  # 4 fractional bits for cv2's shift

    def polyline(index: tuple[int, ...], value: float, thickness: float, closed: bool) -> None:
        cv2.polylines(
            gray,
            [pixel(shape[list(index)])],
            closed,
            value,
            max(1, round(thickness * unit)),
            cv2.LINE_AA,
            4,
        )

    def fill(index: tuple[int, ...], value: float) -> None:
        cv2.fillPoly(gray, [pixel(shape[list(index)])], value, cv2.LINE_AA, 4)

    # The head: an ellipse through the jaw's ends and chin, up over the forehead.
    centre = (shape[0] + shape[16]) / 2
    across = shape[16] - shape[0]
    angle = float(np.degrees(np.arctan2(across[1], across[0])))
    half_width = float(np.linalg.norm(across)) / 2
    half_height = float(np.linalg.norm(shape[8] - centre))
    cv2.ellipse(
        gray,
        (pixel(centre)[0], pixel(centre)[1]),
        (round(16 * half_width * 1.02), round(16 * half_height * 1.02)),
        angle,
        0,
        360,
        170,
        -1,
        cv2.LINE_AA,
        4,
    )
    polyline(JAW, 125, 0.03, closed=False)
    for brow in (RIGHT_BROW, LEFT_BROW):
        polyline(brow, 60, 0.07, closed=False)
    for eye in (RIGHT_EYE, LEFT_EYE):
        fill(eye, 235)
        iris = shape[list(eye)].mean(axis=0)
        cv2.circle(gray, tuple(pixel(iris)), round(16 * 0.05 * unit), 35, -1, cv2.LINE_AA, 4)
    polyline(NOSE_BRIDGE, 135, 0.03, closed=False)
    polyline(NOSE_BASE, 100, 0.04, closed=False)
    fill(OUTER_LIP, 105)
    fill(INNER_LIP, 55)
    gray = cv2.GaussianBlur(gray, (0, 0), 1.0)
    gray = gray + rng.normal(0.0, 4.0, gray.shape).astype(np.float32)
    tint = np.array([0.85, 0.95, 1.1], dtype=np.float32)  # B, G, R: a skin-like colour cast
    return np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)


def synthetic_face(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BGR image, landmarks (68, 2) and face box [x0, y0, x1, y1], both 0-based pixels)."""
    side = int(rng.integers(220, 300))
    size = (side, side + int(rng.choice([0, 0, 24, -20])))  # (H, W): some not square
    points = face_shape(rng)
    scale = side / 6.6  # the landmarks' extent about a third of the image, as in 300-W crops
    turn = np.radians(rng.uniform(-10.0, 10.0))
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centre = np.array([size[1], size[0]]) / 2 + rng.uniform(-8.0, 8.0, 2)
    landmarks = points @ rotation.T * scale + centre
    image = _draw(landmarks, size, rng)
    (x0, y0), (x1, y1) = landmarks.min(axis=0), landmarks.max(axis=0)
    width, height = x1 - x0, y1 - y0
    jitter = rng.uniform(-0.03, 0.03, 4) * [width, height, width, height]
    box = np.array([x0, y0 - 0.1 * height, x1, y1]) + jitter  # a detector's box reaches higher
    return image, landmarks, box


def _pts_text(landmarks: np.ndarray) -> str:
    rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in landmarks)  # 1-based on file
    return f"version: 1\nn_points:  {len(landmarks)}\n{{\n{rows}\n}}\n"


def write_synthetic_300w(root: Path) -> Path:
    """Write the tree under ``root`` (created); returns ``root``."""
    rng = np.random.default_rng(SEED)
    lines = ["image,xmin,ymin,xmax,ymax"]
    for folder, names in FOLDERS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            image, landmarks, box = synthetic_face(rng)
            path = root / folder / f"{name}.jpg"
            if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 94]):
                raise OSError(f"cannot write {path}")
            (root / folder / f"{name}.pts").write_text(_pts_text(landmarks))
            lines.append(f"{folder}/{name}.jpg," + ",".join(f"{v + 1:.3f}" for v in box))
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    (root / "README.md").write_text(
        "Synthetic 300-W tree written by tests/synthetic_300w.py: drawn faces in the official "
        "layout, for code paths only (no accuracy).\n"
    )
    return root
