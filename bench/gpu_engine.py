"""Raw-engine throughput at batch sizes 1 to 256 on one provider, for several model files.

    python -m bench.gpu_engine model/dan-300w.onnx /tmp/dan-300w.fp16.onnx --provider cuda \
        --batch-sizes 1,2,4,8,16,32,64,128,256 --seconds 2 --accuracy --json engine.json

For each file one ``service.engine.Engine`` is built with the largest batch
size as its maximum (on a GPU: the service's tuned batch sizes, powers of two,
each warmed up, inputs and outputs bound to device buffers), then, for each
batch size, batches of that many real common-test crops run for ``--seconds``:
faces/s and the median milliseconds per batch. ``--accuracy`` also scores every
common-test face of ``--data-root`` through that engine (the service's crop,
box-file boxes) and gives each file's inter-ocular error and its difference
from the first file's: the drift of an fp16 or int8 file on this provider.
A file the provider cannot run is reported with its error, not fatal.
``bench/gpu_check.sh`` runs this on a lent GPU; with ``--provider cpu`` it
runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import test_faces
from model.crop import crop_face, to_image
from training.arguments import non_negative_int, positive_float, positive_ints
from training.dataset import SPLITS, read_gray
from training.metrics import summarise
from training.paths import DEFAULT_DATA_ROOT

DEFAULT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CROP_IMAGES = 64


def measure_file(
    model: Path,
    data_root: Path,
    provider: str,
    sizes: tuple[int, ...],
    seconds: float,
    accuracy: bool,
    cpu_threads: int = 0,
) -> dict[str, Any]:
    """One file's row: provider, warm-up, per batch size faces/s and ms, and its accuracy."""
    from service.config import Settings
    from service.engine import Engine

    started = time.perf_counter()
    settings = Settings(
        model_path=model,
        provider=provider,  # type: ignore[arg-type]
        max_batch_size=max(sizes),
        cpu_threads=cpu_threads,
    )
    engine = Engine(settings)
    load_s = time.perf_counter() - started
    warmup = engine.warm_up(runs=2)
    info = engine.info
    faces = test_faces(data_root, CROP_IMAGES)
    crops = [
        crop_face(read_gray(s.image_path), s.box("file"), info.mean_shape, info.input_size).pixels
        for s in faces
    ]
    row: dict[str, Any] = {
        "model": str(model),
        "name": info.name,
        "version": info.version,
        "precision": info.compute_precision,
        "provider": engine.provider,
        "io_binding": engine.use_io_binding,
        "load_s": round(load_s, 2),
        "warmup_s": round(warmup.seconds, 2),
        "batches": [],
    }
    for size in sizes:
        batch = [crops[k % len(crops)] for k in range(size)]
        engine.run(batch)  # this size's first run is not timed
        times: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 3:
            t0 = time.perf_counter()
            engine.run(batch)
            times.append(time.perf_counter() - t0)
        total = sum(times)
        row["batches"].append(
            {
                "batch": size,
                "runs": len(times),
                "faces_per_s": round(size * len(times) / total, 1),
                "batch_ms_median": round(1000 * statistics.median(times), 3),
            }
        )
    if accuracy:
        row["accuracy"] = score(engine, data_root)
    return row


def score(engine: Any, data_root: Path) -> dict[str, Any]:
    """Inter-ocular (and the other) errors of every common-test face through the engine."""
    info = engine.info
    from bench.samples import boxed_faces

    samples = boxed_faces(data_root, SPLITS["common"])
    predicted = []
    chunk = engine.max_batch_size
    for i in range(0, len(samples), chunk):
        group = samples[i : i + chunk]
        cropped = [
            crop_face(read_gray(s.image_path), s.box("file"), info.mean_shape, info.input_size)
            for s in group
        ]
        out = engine.run([c.pixels for c in cropped])
        predicted += [to_image(o, c) for o, c in zip(out, cropped, strict=True)]
    summary = summarise(np.stack(predicted), np.stack([s.landmarks for s in samples])).as_dict()
    return {k: round(float(v), 6) if isinstance(v, float) else v for k, v in summary.items()}


def run(
    models: list[Path],
    data_root: Path,
    provider: str,
    sizes: tuple[int, ...],
    seconds: float,
    accuracy: bool,
    cpu_threads: int = 0,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model in models:
        try:
            rows.append(
                measure_file(model, data_root, provider, sizes, seconds, accuracy, cpu_threads)
            )
        except Exception as e:  # a file this provider cannot run is a result, not a crash
            rows.append({"model": str(model), "provider": provider, "error": str(e)[:2000]})
    base = rows[0].get("accuracy") if rows else None
    for row in rows:
        if base is not None and "accuracy" in row:
            row["drift_points"] = {
                k: round(100 * (row["accuracy"][k] - base[k]), 4)
                for k in ("inter_ocular", "inter_pupil", "auc_0_08", "failure_0_08")
            }
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per file and batch size."""
    lines = [
        "| model | precision | provider | batch | faces/s | ms per batch | NME io % | drift |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        name = Path(row["model"]).name
        if "error" in row:
            lines.append(f"| {name} | | {row['provider']} | error: {row['error'][:120]} | | | | |")
            continue
        nme = row.get("accuracy", {}).get("inter_ocular")
        drift = row.get("drift_points", {}).get("inter_ocular")
        for b in row["batches"]:
            lines.append(
                f"| {name} | {row['precision']} | {row['provider']} | {b['batch']} | "
                f"{b['faces_per_s']} | {b['batch_ms_median']} | "
                f"{'' if nme is None else f'{100 * nme:.3f}'} | "
                f"{'' if drift is None else f'{drift:+.4f}'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("models", type=Path, nargs="+", help="ONNX files; the first is the reference")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W (or packed)")
    p.add_argument("--provider", default="cuda", help="cpu, cuda, tensorrt or auto")
    p.add_argument(
        "--batch-sizes",
        type=positive_ints,
        default=DEFAULT_SIZES,
        help="comma-separated batch sizes",
    )
    p.add_argument("--seconds", type=positive_float, default=2.0, help="seconds per batch size")
    p.add_argument(
        "--cpu-threads", type=non_negative_int, default=0, help="CPU provider threads (0: all)"
    )
    p.add_argument("--accuracy", action="store_true", help="score the common faces too")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    rows = run(
        args.models,
        args.data_root,
        args.provider,
        tuple(sorted(set(args.batch_sizes))),
        args.seconds,
        args.accuracy,
        args.cpu_threads,
    )
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all("error" not in r for r in rows[:1]) else 1


if __name__ == "__main__":
    sys.exit(main())
