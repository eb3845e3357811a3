"""Fit CenterFace's box mapping to the model's box convention on the 300-W training images.

    nice -n 19 python -m bench.calibrate_detector            # rewrites the calibration file

Runs the service's CenterFace (same input size) on the training images (afw,
lfpw/trainset, helen/trainset), pairs each annotated face with the detection
that overlaps its ``boxes.csv`` box most (IoU >= ``--min-iou``), fits
``service.detectors.calibration.fit_box_mapping`` from the detector's boxes to
those boxes, prints the fit's quality (IoU with the target before and after,
residuals) and writes the numbers, with how they were fitted, to the JSON file
CenterFace loads, ``service/detectors/centerface_calibration.json``
(``service.detectors.calibration.calibration_json``; ``--dry-run``: print only).
The detector runs uncalibrated here (the identity mapping), so a missing or
broken calibration file does not stop its refit. The test images are not used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.samples import boxed_faces
from service.detectors.calibration import BoxMapping, box_iou, calibration_json, fit_box_mapping
from service.detectors.centerface import CALIBRATION_FILE, DEFAULT_MAX_SIDE, CenterFace
from training.arguments import fraction, non_negative_int
from training.dataset import SPLITS, read_gray
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

OUTPUT = REPO_ROOT / "service" / "detectors" / CALIBRATION_FILE
COMMAND = "python -m bench.calibrate_detector"
FITTED_ON = "training images: afw, lfpw/trainset, helen/trainset"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the 300-W folder")
    p.add_argument("--threshold", type=fraction, default=0.3, help="CenterFace score threshold")
    p.add_argument("--min-iou", type=fraction, default=0.3, help="least IoU of a usable pair")
    p.add_argument("--limit", type=non_negative_int, default=0, help="first N images only (0: all)")
    p.add_argument("--output", type=Path, default=OUTPUT, help="the calibration file written")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the file")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    samples = boxed_faces(args.data_root, SPLITS["training"], args.limit)
    detector = CenterFace(
        threshold=args.threshold, max_side=DEFAULT_MAX_SIDE, threads=1, box_mapping=BoxMapping()
    )
    detected, target = [], []
    for sample in samples:
        found = detector.detect(read_gray(sample.image_path)).faces
        if not found:
            continue
        box = sample.box("file")
        iou = box_iou(box, np.array([d.box for d in found]))[0]
        best = int(iou.argmax())
        if iou[best] >= args.min_iou:
            detected.append(found[best].box)
            target.append(box)
    d, t = np.array(detected), np.array(target)
    mapping = fit_box_mapping(d, t)
    before = float(np.diag(box_iou(d, t)).mean())
    mapped = mapping.apply(d)
    after = float(np.diag(box_iou(mapped, t)).mean())
    size = np.stack([d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]] * 2, axis=1)
    residual = np.abs(mapped - t) / size
    print(f"{len(d)} of {len(samples)} training faces paired (IoU >= {args.min_iou})")
    print(f"mapping: {mapping}")
    print(f"mean IoU with boxes.csv: {before:.3f} -> {after:.3f}")
    print(
        "median |residual| / detector box size (x0, y0, x1, y1): "
        + ", ".join(f"{v:.3f}" for v in np.median(residual, axis=0))
    )
    if not args.dry_run:
        fit = {
            "detector": detector.name,
            "target": "300-W detector boxes (boxes.csv)",
            "images": FITTED_ON if not args.limit else f"{FITTED_ON}, first {args.limit}",
            "threshold": args.threshold,
            "max_side": DEFAULT_MAX_SIDE,
            "min_iou": args.min_iou,
            "faces": len(samples),
            "paired": len(d),
            "mean_iou_before": round(before, 3),
            "mean_iou_after": round(after, 3),
            "median_abs_residual_x0_y0_x1_y1": [
                round(float(v), 3) for v in np.median(residual, axis=0)
            ],
            "written_by": COMMAND,
        }
        args.output.write_text(calibration_json(mapping, fit), encoding="utf-8")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
