"""End-to-end accuracy: the running service against the evaluation command, same boxes.

    python -m bench.service_accuracy --model model/dan-300w.onnx [--mirror-average]

1. Reference: ``training.evaluate`` on the ONNX file (the 300-W common subset,
   ``boxes.csv`` boxes): the numbers of the model card.
2. Starts ``python -m service`` with that model (or uses ``--url``) and POSTs
   every image with its ``boxes.csv`` box, as a user would, in pixels of the
   image (0-based), and scores the returned landmarks the same way.
3. Prints both rows and their differences; passes when every number
   (inter-ocular, inter-pupil, box-diagonal mean error, AUC0.08, failure rate)
   agrees within ``--tolerance`` percentage points (issue 7: 0.05).

With ``--mirror-average`` the service runs with ``DAN_MIRROR_AVERAGE=true`` and the
reference is ``training.evaluate --mirror-average``: the same check of that mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx
import numpy as np

from bench.serving import service_url
from training.arguments import non_negative_float, non_negative_int
from training.dataset import load_split
from training.evaluate import evaluate
from training.metrics import summarise
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

COMPARED = ("inter_ocular", "inter_pupil", "box_diagonal", "auc_0_08", "failure_0_08")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", type=Path, default=REPO_ROOT / "model" / "dan-300w.onnx", help="ONNX model"
    )
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the 300-W folder")
    p.add_argument("--split", default="common", help="300-W split (default: common)")
    p.add_argument(
        "--threads", type=non_negative_int, default=0, help="CPU threads (reference and service)"
    )
    p.add_argument("--url", default=None, help="a running service instead of starting one")
    p.add_argument("--limit", type=non_negative_int, default=0, help="first N images only (0: all)")
    p.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=0.05,
        help="largest difference, percentage points",
    )
    p.add_argument(
        "--mirror-average",
        action="store_true",
        help="the service with DAN_MIRROR_AVERAGE=true, against training.evaluate --mirror-average",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p


def service_landmarks(url: str, images: list[Path], boxes: list[list[float]]) -> np.ndarray:
    """(M, 68, 2) landmarks the service returns for each image and its one box."""
    out = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for path, box in zip(images, boxes, strict=True):
            response = client.post(
                "/align",
                files={"image": (path.name, path.read_bytes())},
                data={"boxes": json.dumps([box])},
            )
            if response.status_code != 200:
                raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text}")
            (face,) = response.json()["faces"]
            out.append(face["landmarks"])
    return np.asarray(out, dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    args.model = args.model.resolve()
    reference = evaluate(
        args.model,
        args.data_root,
        args.split,
        threads=args.threads,
        limit=args.limit,
        mirror_average=args.mirror_average,
    )
    samples = load_split(args.data_root, args.split).samples
    samples = samples[: args.limit] if args.limit > 0 else samples
    settings = {
        "model_path": args.model,
        "cpu_threads": args.threads,
        "log_level": "warning",
        "mirror_average": args.mirror_average,
    }
    with service_url(args.url, settings) as url:
        predicted = service_landmarks(
            url, [s.image_path for s in samples], [s.box("file").tolist() for s in samples]
        )
    served = summarise(predicted, np.stack([s.landmarks for s in samples])).as_dict()
    differences = {k: 100 * (served[k] - reference[k]) for k in COMPARED}
    ok = all(abs(d) <= args.tolerance for d in differences.values())
    mode = ", each face averaged with its mirror" if args.mirror_average else ""
    print(f"{args.model.name} on 300-W {args.split}: {len(samples)} images, boxes.csv boxes{mode}")
    print(f"{'':<22}" + "".join(f"{k:>14}" for k in COMPARED))
    for name, row in (("training.evaluate %", reference), ("service %", served)):
        print(f"{name:<22}" + "".join(f"{100 * row[k]:>14.3f}" for k in COMPARED))
    print(f"{'difference (points)':<22}" + "".join(f"{differences[k]:>+14.3f}" for k in COMPARED))
    print(f"{'PASS' if ok else 'FAIL'} (tolerance {args.tolerance:g} points)")
    if args.json is not None:
        numbers = {
            "model": str(args.model),
            "split": args.split,
            "images": len(samples),
            "mirror_average": args.mirror_average,
            "evaluate": {k: reference[k] for k in COMPARED},
            "service": {k: served[k] for k in COMPARED},
            "difference_points": differences,
            "pass": ok,
        }
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
