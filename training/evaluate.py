"""Evaluate an exported DAN (the ONNX file users get) on a 300-W subset.

    python -m training.evaluate model/dan-300w.onnx --data-root ../shared/data/300w \
        --split common --output-dir runs/eval-common

Each face is initialised from its box (default: the detector boxes of the box
file, the paper's protocol), cropped by ``model.crop`` (as the service and
training crop), run through onnxruntime, and mapped back to image pixels.
Reports the mean error normalised by the inter-ocular, inter-pupil and
box-diagonal distances, AUC up to 0.08 and the failure rate at 0.08
(inter-ocular), for the final stage and for every earlier stage; writes
``summary.json``, ``per_image.csv`` and ``ced.png``. ``--write-metadata``
stores the summary in the model file's ``dan.accuracy`` metadata (the graph is
left untouched). ``--mirror-average`` measures test-time augmentation: every
crop also goes through the network mirrored, and the two answers are averaged
(twice the inference); it is a measurement, never what the service does.

Needs no torch: the serving install (``pip install -e '.[cpu]'``) evaluates a
model file. ``ced.png`` needs matplotlib and ``--write-metadata`` the onnx
package (both in the ``train`` extra); without matplotlib the plot is skipped
with a warning.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model.arrays import FloatArray, GrayImage
from model.crop import crop_face, to_image
from model.landmarks import mirror_average
from model.metadata import STAGE_OUTPUT_NAME, ModelMetadata, onnx_props, set_onnx_props
from training.arguments import non_negative_int, positive_int
from training.dataset import SPLITS, BoxFrom, load_split, read_gray
from training.metrics import ced, normalised_errors, summarise
from training.paths import DEFAULT_DATA_ROOT

log = logging.getLogger("training.evaluate")


@dataclass(frozen=True)
class OnnxModel:
    """An exported model on onnxruntime's CPU provider, with its ``dan.*`` metadata."""

    session: ort.InferenceSession
    metadata: ModelMetadata

    @classmethod
    def load(cls, path: Path, threads: int = 0) -> OnnxModel:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads > 0:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map, path)
        return cls(session, metadata)

    def stage_landmarks(self, crops: npt.NDArray[np.uint8]) -> FloatArray:
        """Every stage's landmarks (B, stages, 68, 2) in crop pixels for crops (B, S, S)."""
        x = crops[:, None].astype(np.float32)
        (out,) = self.session.run([STAGE_OUTPUT_NAME], {self.metadata.input_name: x})
        return np.asarray(out, dtype=np.float64)

    def mirror_averaged_landmarks(self, crops: npt.NDArray[np.uint8]) -> FloatArray:
        """``stage_landmarks`` averaged with the answers for the crops mirrored left-right."""
        n, size = len(crops), crops.shape[-1]
        out = self.stage_landmarks(np.concatenate([crops, crops[:, :, ::-1]]))
        return mirror_average(out[:n], out[n:], size)


def predict(
    model: OnnxModel,
    images: list[GrayImage],
    boxes: list[FloatArray],
    batch_size: int,
    mirror_average: bool = False,
) -> FloatArray:
    """Landmarks (M, stages, 68, 2) in image pixels, one face per (image, box)."""
    run = model.mirror_averaged_landmarks if mirror_average else model.stage_landmarks
    mean_shape, size = model.metadata.mean_shape, model.metadata.input_size
    results = []
    for i in range(0, len(images), batch_size):
        crops = [
            crop_face(image, box, mean_shape, size)
            for image, box in zip(
                images[i : i + batch_size], boxes[i : i + batch_size], strict=True
            )
        ]
        out = run(np.stack([c.pixels for c in crops]))
        results += [to_image(o, c) for c, o in zip(crops, out, strict=True)]
    return np.stack(results)


def paper_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'model':<10} {'images':>6} {'inter-ocular %':>15} {'inter-pupil %':>14} "
        f"{'box diag %':>11} {'AUC0.08 %':>10} {'failure %':>10}"
    ]
    for name, s in rows.items():
        lines.append(
            f"{name:<10} {s['images']:>6} {100 * s['inter_ocular']:>15.2f} {100 * s['inter_pupil']:>14.2f} "
            f"{100 * s['box_diagonal']:>11.2f} {100 * s['auc_0_08']:>10.2f} {100 * s['failure_0_08']:>10.2f}"
        )
    return "\n".join(lines)


def plot_ced(
    errors: dict[str, FloatArray], path: Path, title: str, threshold: float = 0.08
) -> None:
    """The CED plot of each row's errors; skipped with a warning when matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        log.warning("%s not written: plotting needs matplotlib (the train extra)", path.name)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for name, e in errors.items():
        xs, ys = ced(e, threshold)
        ax.plot(xs, ys, label=f"{name} (mean {100 * e.mean():.2f}%)")
    ax.set_xlim(0, threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel("inter-ocular normalised error")
    ax.set_ylabel("fraction of images")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(
    model_path: Path,
    data_root: Path,
    split: str,
    boxes: BoxFrom = "file",
    box_file: Path | None = None,
    output_dir: Path | None = None,
    batch_size: int = 16,
    threads: int = 0,
    limit: int = 0,
    mirror_average: bool = False,
) -> dict[str, Any]:
    """Summary dict (also written to ``output_dir``) of the model on one split."""
    model = OnnxModel.load(model_path, threads)
    data = load_split(data_root, split, box_file)
    if not data.samples:
        raise SystemExit(
            f"split {split!r}: no images under {data_root} (absent: {', '.join(data.absent)})"
        )
    samples = data.samples[:limit] if limit > 0 else data.samples
    t0 = time.perf_counter()
    images = [read_gray(s.image_path) for s in samples]
    face_boxes = [s.box(boxes) for s in samples]
    pred = predict(model, images, face_boxes, batch_size, mirror_average)  # (M, stages, 68, 2)
    seconds = time.perf_counter() - t0
    target = np.stack([s.landmarks for s in samples])
    stages = pred.shape[1]
    rows = {f"stage {k + 1}": summarise(pred[:, k], target).as_dict() for k in range(stages)}
    final = rows[f"stage {stages}"]
    summary: dict[str, Any] = {
        "model": str(model_path),
        "model_name": model.metadata.name,
        "model_version": model.metadata.version,
        "split": split,
        "subsets_present": list(data.present),
        "subsets_absent": list(data.absent),
        "boxes": boxes,
        "mirror_average": mirror_average,
        **final,
        "stages": rows,
        "seconds": round(seconds, 2),
    }
    summary["report"] = (
        f"{split}: {len(samples)} images, boxes from {boxes}"
        f"{', each averaged with its mirror' if mirror_average else ''}; "
        f"absent subsets: {', '.join(data.absent) or 'none'}\n{paper_table(rows)}"
    )
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        with (output_dir / "per_image.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "image",
                    *[f"stage{k + 1}_{n}" for k in range(stages) for n in ("io", "ip", "diag")],
                ]
            )
            per = [
                [
                    normalised_errors(pred[:, k], target, n)
                    for n in ("inter_ocular", "inter_pupil", "box_diagonal")
                ]
                for k in range(stages)
            ]
            for i, s in enumerate(samples):
                w.writerow(
                    [s.name, *[f"{per[k][j][i]:.6f}" for k in range(stages) for j in range(3)]]
                )
        io = {
            name: normalised_errors(pred[:, k], target, "inter_ocular")
            for k, name in enumerate(rows)
        }
        plot_ced(
            io, output_dir / "ced.png", f"300-W {split} ({len(samples)} images), {boxes} boxes"
        )
        log.info("wrote %s", output_dir)
    return summary


def write_accuracy(model_path: Path, summary: dict[str, Any]) -> None:
    """Store an evaluation summary in the model file's ``dan.accuracy`` metadata (needs onnx)."""
    import onnx

    proto = onnx.load(str(model_path))
    metadata = ModelMetadata.from_onnx_props(onnx_props(proto), model_path)
    accuracy = dict(metadata.accuracy)
    accuracy[summary["split"]] = {
        k: summary[k]
        for k in (
            "images",
            "boxes",
            "inter_ocular",
            "inter_pupil",
            "box_diagonal",
            "auc_0_08",
            "failure_0_08",
        )
    }
    set_onnx_props(proto, dataclasses.replace(metadata, accuracy=accuracy).to_onnx_props())
    onnx.save(proto, str(model_path))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate an exported DAN on 300-W.")
    p.add_argument("model", type=Path, help="ONNX file written by training.export")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W root")
    p.add_argument(
        "--split", choices=sorted(SPLITS), default="common", help="the paper's split to evaluate"
    )
    p.add_argument(
        "--boxes",
        choices=("file", "landmarks"),
        default="file",
        help="initialise from the box file (paper) or the landmarks' extent",
    )
    p.add_argument(
        "--box-file", type=Path, default=None, help="box file (default: found under --data-root)"
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where summary.json, per_image.csv and ced.png go",
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="faces per onnxruntime call")
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=0,
        help="onnxruntime intra-op threads (0: all cores)",
    )
    p.add_argument(
        "--limit",
        type=non_negative_int,
        default=0,
        help="evaluate only the first N images (0: all)",
    )
    p.add_argument(
        "--mirror-average",
        action="store_true",
        help="also run every crop mirrored and average the two answers (test-time "
        "augmentation: twice the inference; refused with --write-metadata)",
    )
    p.add_argument(
        "--write-metadata",
        action="store_true",
        help="store the summary in the model's dan.accuracy metadata",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.write_metadata and args.mirror_average:
        parser.error(
            "--write-metadata records what the model file gives by itself; "
            "--mirror-average measures something else"
        )
    if args.write_metadata:
        try:
            import onnx  # noqa: F401  (checked before a long evaluation, used by write_accuracy)
        except ImportError:
            raise SystemExit(
                "--write-metadata needs the onnx package: pip install -e '.[train]'"
            ) from None
    summary = evaluate(
        args.model,
        args.data_root,
        args.split,
        args.boxes,
        args.box_file,
        args.output_dir,
        args.batch_size,
        args.threads,
        args.limit,
        args.mirror_average,
    )
    sys.stdout.write(summary["report"] + "\n")
    if args.write_metadata:
        write_accuracy(args.model, summary)


if __name__ == "__main__":
    main()
