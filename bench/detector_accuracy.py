"""Acceptance of face detection: landmarks through the running service without boxes vs boxes.csv.

    nice -n 19 python -m bench.detector_accuracy --model model/dan-300w.onnx
    nice -n 19 python -m bench.detector_accuracy --model model/dan-300w.onnx --detector-init keypoints

1. Reference: the same ONNX model on the 554 common-test images (lfpw/testset,
   helen/testset) from their ``boxes.csv`` boxes, cropped the way training
   does (``training.evaluate.predict``): inter-ocular mean error.
2. Starts ``python -m service`` with that model and the detector settings
   (or uses ``--url``), POSTs every image without boxes and takes, for each
   annotated face, the returned face whose box overlaps the ``boxes.csv`` box
   most (IoU >= 0.5: found). Returned boxes are in the model's box convention.
3. Prints recall, the inter-ocular mean error on the found faces (and the
   reference's on the same faces), extra faces, detection time, and checks the
   issue's targets: recall >= 98%; error <= reference + 0.2 points.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import httpx
import numpy as np

from bench.samples import boxed_faces
from bench.serving import service_url
from service.detectors.calibration import box_iou
from training.arguments import fraction, non_negative_int, positive_int
from training.dataset import SPLITS, read_gray
from training.evaluate import OnnxModel, predict
from training.metrics import normalised_errors
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

MIN_RECALL = 0.98
MAX_EXTRA_ERROR = 0.2  # percentage points of inter-ocular error
MATCH_IOU = 0.5


def service_settings(args: argparse.Namespace) -> dict[str, object]:
    settings: dict[str, object] = {
        "model_path": args.model,
        "cpu_threads": args.threads,
        "detector": "centerface",
        "detector_init": args.detector_init,
        "detector_precision": args.detector_precision,
        "log_level": "warning",
    }
    if args.threshold is not None:
        settings["detector_threshold"] = args.threshold
    return settings


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", type=Path, default=REPO_ROOT / "model" / "dan-300w.onnx", help="ONNX model"
    )
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the 300-W folder")
    p.add_argument(
        "--detector-init", choices=["box", "keypoints"], default="box", help="DAN_DETECTOR_INIT"
    )
    p.add_argument("--threshold", type=fraction, default=None, help="DAN_DETECTOR_THRESHOLD")
    p.add_argument(
        "--detector-precision",
        choices=["auto", "float32", "int8"],
        default="auto",
        help="DAN_DETECTOR_PRECISION (int8: service/detectors/centerface.int8.onnx)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=1, help="DAN_CPU_THREADS and reference threads"
    )
    p.add_argument("--url", default=None, help="a running service instead of starting one")
    p.add_argument(
        "--limit", type=non_negative_int, default=0, help="first N images only (0: all 554)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    samples = boxed_faces(args.data_root, SPLITS["common"], args.limit)
    target = np.stack([s.landmarks for s in samples])

    model = OnnxModel.load(args.model, args.threads)
    images = [read_gray(s.image_path) for s in samples]
    reference = predict(model, images, [s.box("file") for s in samples], 8)[:, -1]
    reference_error = normalised_errors(reference, target, "inter_ocular")

    found = np.zeros(len(samples), dtype=bool)
    predicted = np.zeros_like(target)
    extra = 0
    detect_ms: list[float] = []
    with (
        service_url(args.url, service_settings(args)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        for i, sample in enumerate(samples):
            files = {"image": (sample.image_path.name, sample.image_path.read_bytes())}
            response = client.post("/align", files=files)
            response.raise_for_status()
            faces = response.json()["faces"]
            if faces:
                detect_ms.append(float(faces[0]["timings"]["detect_ms"]))
                assert all(f["box_source"] == "detector" for f in faces)
                iou = box_iou(sample.box("file"), np.array([f["box"] for f in faces]))[0]
                best = int(iou.argmax())
                if iou[best] >= MATCH_IOU:
                    found[i] = True
                    predicted[i] = np.asarray(faces[best]["landmarks"])
                extra += int((iou < MATCH_IOU).sum())

    recall = float(found.mean())
    error = 100 * float(normalised_errors(predicted[found], target[found], "inter_ocular").mean())
    ref_found = 100 * float(reference_error[found].mean())
    ref_all = 100 * float(reference_error.mean())
    ok = recall >= MIN_RECALL and error <= ref_found + MAX_EXTRA_ERROR
    numbers = {
        "model": str(args.model),
        "images": len(samples),
        "detector_init": args.detector_init,
        "detector_precision": args.detector_precision,
        "recall": round(recall, 4),
        "found": int(found.sum()),
        "inter_ocular_error_detector_pct": round(error, 3),
        "inter_ocular_error_boxes_csv_found_pct": round(ref_found, 3),
        "inter_ocular_error_boxes_csv_all_pct": round(ref_all, 3),
        "extra_faces": extra,
        "detect_ms_median": round(statistics.median(detect_ms), 1) if detect_ms else None,
        "pass": ok,
    }
    print(
        f"{args.model.name}, detector init {args.detector_init}, {len(samples)} common-test images\n"
        f"found {found.sum()} / {len(samples)} = {100 * recall:.2f}% (target >= {100 * MIN_RECALL:g}%)\n"
        f"inter-ocular mean error, found faces: detector {error:.3f}%, boxes.csv {ref_found:.3f}% "
        f"(difference {error - ref_found:+.3f}, target <= +{MAX_EXTRA_ERROR:g}); "
        f"boxes.csv on all {len(samples)}: {ref_all:.3f}%\n"
        f"extra faces: {extra}; detection median {numbers['detect_ms_median']} ms\n"
        f"{'PASS' if ok else 'FAIL'}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
