"""Labelled crops for a confidence score: faces, bad alignments and non-faces, and their measures.

What ``training.confidence`` trains its head on (training images) and
``bench.confidence`` measures on (the common subset): from each annotated
face, crops of four kinds, each with its ground truth in crop pixels:

- ``box``: the face box (the detector box of ``boxes.csv``), optionally
  jittered as a detector would;
- ``perturbed``: the box strongly rotated, scaled and shifted (the model's own
  failures, with their real errors);
- ``shifted``: the box moved off the face by a range of box widths (a box
  beside the face: its landmarks are wrong);
- ``background``: a box of about the face's size that does not overlap the
  landmarks' bounding box (no face at all; its error is infinite).

Also the measures of a score on such crops: AUROC, shares below a threshold,
the threshold rule. numpy and OpenCV only (no torch), so the benchmark runs on
the serving install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.arrays import FloatArray, GrayImage
from model.crop import crop_transform, initial_shape_from_box, warp_crop
from model.geometry import apply_affine, bounding_box
from model.landmarks import OUTER_EYE_CORNERS
from training.augment import Face, Perturbation, perturb_shape

GOOD_ERROR = 0.05  # inter-ocular error up to which landmarks count as right (target 1)
BAD_ERROR = 0.08  # from which they count as wrong (target 0): the benchmark's failure
RANKING_ERROR = 0.06  # the AUROC of the issue tells errors >= 6% from the rest
# Crop kinds, in the order of their codes.
KINDS = ("box", "perturbed", "shifted", "background")
BOX, PERTURBED, SHIFTED, BACKGROUND = range(len(KINDS))
NO_JITTER = Perturbation(
    rotation_sd_deg=0.0, scale_sd=0.0, translation_sd=0.0, mirror_probability=0.0
)
DETECTOR_JITTER = Perturbation(
    rotation_sd_deg=3.0, scale_sd=0.04, translation_sd=0.03, mirror_probability=0.0
)
STRONG = Perturbation(
    rotation_sd_deg=30.0, scale_sd=0.3, translation_sd=0.2, min_scale=0.4, mirror_probability=0.0
)
BACKGROUND_SCALE_SD = 0.2  # log-normal spread of a background box's side around the face's
BACKGROUND_TRIES = 50


@dataclass(frozen=True)
class CropPlan:
    """Crops of each kind per face, and how each kind is made."""

    box: int = 1
    perturbed: int = 2
    shifted: int = 1
    background: int = 1
    box_jitter: Perturbation = DETECTOR_JITTER
    strong: Perturbation = STRONG
    shift_widths: tuple[float, float] = (0.6, 2.0)  # box widths a shifted box moves
    mirror_probability: float = 0.5

    def schedule(self) -> list[int]:
        counts = (self.box, self.perturbed, self.shifted, self.background)
        return [kind for kind, count in enumerate(counts) for _ in range(count)]


# Training: the detector's jitter, shifts from 0.6 box widths (between a face and none).
TRAINING_PLAN = CropPlan()
# Measuring: the detector boxes as they are; non-faces as the issue defines them (shifts of one
# box width or more, face-sized boxes on the background).
BENCHMARK_PLAN = CropPlan(
    box=1,
    perturbed=1,
    shifted=2,
    background=2,
    box_jitter=NO_JITTER,
    shift_widths=(1.0, 2.0),
    mirror_probability=0.0,
)


@dataclass(frozen=True)
class Crops:
    """Network inputs with their ground truth in crop pixels (NaN where no face was meant)."""

    pixels: npt.NDArray[np.uint8]  # (M, S, S)
    landmarks: FloatArray  # (M, 68, 2); NaN for background crops
    kinds: npt.NDArray[np.int64]  # (M,) codes of KINDS
    faces: npt.NDArray[np.int64]  # (M,) index of the source face

    def __len__(self) -> int:
        return len(self.kinds)


def shifted_box(
    box: FloatArray, rng: np.random.Generator, widths: tuple[float, float]
) -> FloatArray:
    """The box moved by ``widths`` (uniform in the range) of its width in a random direction."""
    x0, y0, x1, y1 = box
    distance = rng.uniform(*widths) * (x1 - x0)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    dx, dy = distance * math.cos(angle), distance * math.sin(angle)
    return np.array([x0 + dx, y0 + dy, x1 + dx, y1 + dy])


def background_box(
    face_box: FloatArray, landmarks: FloatArray, shape: tuple[int, int], rng: np.random.Generator
) -> FloatArray | None:
    """A square box of about the face's size inside the image, not overlapping the landmarks'
    bounding box; None when none was found."""
    height, width = shape
    side = float(face_box[2] - face_box[0]) * math.exp(rng.normal(0.0, BACKGROUND_SCALE_SD))
    if side >= min(width, height):
        return None
    lx0, ly0, lx1, ly1 = bounding_box(landmarks)
    for _ in range(BACKGROUND_TRIES):
        x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        if x0 + side < lx0 or x0 > lx1 or y0 + side < ly0 or y0 > ly1:
            return np.array([x0, y0, x0 + side, y0 + side])
    return None


def _crop(
    image: GrayImage,
    landmarks: FloatArray,
    box: FloatArray,
    mean_shape: FloatArray,
    size: int,
    rng: np.random.Generator,
    jitter: Perturbation,
) -> tuple[GrayImage, FloatArray]:
    initial = perturb_shape(initial_shape_from_box(mean_shape, box), rng, jitter)
    transform = crop_transform(initial, mean_shape)
    return warp_crop(image, transform, size), apply_affine(transform, landmarks)


def cut_crops(
    faces: Sequence[Face], mean_shape: FloatArray, size: int, plan: CropPlan, seed: int
) -> Crops:
    """The plan's crops of every face, in face order."""
    rng = np.random.default_rng(seed)
    schedule = plan.schedule()
    pixels, landmarks, kinds, indices = [], [], [], []
    for index, original in enumerate(faces):
        face = original.mirrored() if rng.random() < plan.mirror_probability else original
        for kind in schedule:
            jitter = plan.box_jitter
            if kind == BACKGROUND:
                found = background_box(face.box, face.landmarks, face.image.shape[:2], rng)
                # No room beside the face: a far shift instead.
                box = shifted_box(face.box, rng, (1.5, 2.0)) if found is None else found
            elif kind == SHIFTED:
                box = shifted_box(face.box, rng, plan.shift_widths)
            else:
                box = face.box
                jitter = plan.box_jitter if kind == BOX else plan.strong
            crop, points = _crop(face.image, face.landmarks, box, mean_shape, size, rng, jitter)
            if kind == BACKGROUND:
                points = np.full_like(points, np.nan)
            pixels.append(crop)
            landmarks.append(points)
            kinds.append(kind)
            indices.append(index)
    return Crops(
        np.stack(pixels),
        np.stack(landmarks),
        np.asarray(kinds, dtype=np.int64),
        np.asarray(indices, dtype=np.int64),
    )


def crop_errors(predicted: FloatArray, target: FloatArray) -> FloatArray:
    """Inter-ocular normalised error (M,) of landmarks (M, N, 2) in crop pixels (the crop is a
    similarity, so this is the image's error); inf where the target is NaN (no face)."""
    a, b = OUTER_EYE_CORNERS
    io = np.linalg.norm(target[:, b] - target[:, a], axis=-1)
    errors = np.linalg.norm(predicted - target, axis=-1).mean(axis=-1) / io
    return np.asarray(np.where(np.isnan(errors), np.inf, errors))


def soft_targets(
    errors: FloatArray, good: float = GOOD_ERROR, bad: float = BAD_ERROR
) -> FloatArray:
    """1 up to ``good``, 0 from ``bad`` (and for no face), linear between."""
    return np.asarray(np.clip((bad - errors) / (bad - good), 0.0, 1.0))


def auroc(scores: FloatArray, positives: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve of ``scores`` ranking ``positives`` above the rest (ties count
    half); NaN when either class is empty."""
    pos, neg = scores[positives], scores[~positives]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _ranks(values: FloatArray) -> FloatArray:
    """1-based ranks with ties averaged."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and ordered[end + 1] == ordered[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def choose_threshold(face_confidence: FloatArray, face_rejection: float) -> float:
    """The largest threshold (rounded down to 0.01) below which at most ``face_rejection`` of
    the given faces fall."""
    if len(face_confidence) == 0:
        raise ValueError("no faces to choose the threshold on")
    allowed = math.floor(face_rejection * len(face_confidence))  # faces allowed below
    ordered = np.sort(face_confidence)
    limit = float(ordered[allowed]) if allowed < len(ordered) else 1.0
    return max(0.0, math.floor(limit * 100.0) / 100.0)


def _share(mask: npt.NDArray[np.bool_], of: npt.NDArray[np.bool_]) -> float | None:
    return float(mask[of].mean()) if of.any() else None


def summarise(
    confidence: FloatArray, errors: FloatArray, kinds: npt.NDArray[np.int64], threshold: float
) -> dict[str, Any]:
    """What a score does on labelled crops: its AUROC for errors >= 6% among the ``box`` faces
    (and among faces and perturbed faces together), the share of failures (>= 8%) flagged, the
    shares of faces and of non-faces (shifted, background) below ``threshold``."""
    faces = kinds == BOX
    perturbed = kinds == PERTURBED
    shifted, background = kinds == SHIFTED, kinds == BACKGROUND
    low = confidence < threshold
    failures = faces & (errors >= BAD_ERROR)
    aligned = faces | perturbed
    return {
        "threshold": threshold,
        "faces": int(faces.sum()),
        "faces_error_6": int((faces & (errors >= RANKING_ERROR)).sum()),
        "auroc_error_6": auroc(confidence[faces], errors[faces] < RANKING_ERROR),
        "faces_below_threshold": _share(low, faces),
        "failures": int(failures.sum()),
        "failures_flagged": _share(low, failures),
        "perturbed": int(perturbed.sum()),
        "perturbed_failures": int((perturbed & (errors >= BAD_ERROR)).sum()),
        "auroc_error_6_faces_and_perturbed": auroc(
            confidence[aligned], errors[aligned] < RANKING_ERROR
        ),
        "failures_flagged_faces_and_perturbed": _share(low, aligned & (errors >= BAD_ERROR)),
        "non_faces": int((shifted | background).sum()),
        "non_faces_below_threshold": _share(low, shifted | background),
        "shifted_below_threshold": _share(low, shifted),
        "background_below_threshold": _share(low, background),
    }
