"""How far the box initialisation is from the truth: the residual similarity per box source.

    python -m training.box_statistics --data-root ../shared/data/300w --split training

For every face, the similarity from the initial shape (the mean shape placed
in the face box) to the ground-truth landmarks, summarised as rotation
(degrees), scale, and translation (fraction of the box's width / height).
This is the distribution the first stage has to undo at test time, and what
the training perturbations should cover.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from model.crop import initial_shape_from_box
from model.geometry import bounding_box, fit_similarity
from training.dataset import SPLITS, BoxFrom, Sample, load_split
from training.mean_shape import canonical_mean_shape
from training.paths import DEFAULT_DATA_ROOT


def residuals(
    samples: list[Sample], mean_shape: np.ndarray, source: BoxFrom
) -> dict[str, np.ndarray]:
    rotation, scale, tx, ty = [], [], [], []
    for s in samples:
        initial = initial_shape_from_box(mean_shape, s.box(source))
        m = fit_similarity(initial, s.landmarks)
        rotation.append(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
        scale.append(np.hypot(m[0, 0], m[1, 0]))
        x0, y0, x1, y1 = bounding_box(initial)
        shift = s.landmarks.mean(axis=0) - initial.mean(axis=0)
        tx.append(shift[0] / (x1 - x0))
        ty.append(shift[1] / (y1 - y0))
    return {
        k: np.asarray(v)
        for k, v in (("rotation_deg", rotation), ("scale", scale), ("tx", tx), ("ty", ty))
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W root")
    p.add_argument("--split", choices=sorted(SPLITS), default="training", help="split to measure")
    p.add_argument(
        "--box-file", type=Path, default=None, help="box file (default: under --data-root)"
    )
    args = p.parse_args(argv)
    samples = load_split(args.data_root, args.split, args.box_file).samples
    mean_shape = canonical_mean_shape(np.stack([s.landmarks for s in samples]))
    report = {}
    for source in ("file", "landmarks"):
        usable = [s for s in samples if source == "landmarks" or s.detector_box is not None]
        stats = residuals(usable, mean_shape, source)  # type: ignore[arg-type]
        report[source] = {
            k: {"mean": round(float(v.mean()), 4), "sd": round(float(v.std()), 4)}
            for k, v in stats.items()
        }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
