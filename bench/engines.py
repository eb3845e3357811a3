"""Raw-engine throughput of several model files, measured in turns in one run.

    python -m bench.engines model/dan-300w.onnx ../shared/checkpoints/dan-300w-half-2026-12.onnx

Each round measures every file once (``bench.load``'s engine figure: batch-1
median latency and full-batch faces/s on real common-test crops, through
``service.engine.Engine``), so slow drifts of a shared machine hit all files
alike; the table gives each file's median over the rounds and its ratio to the
first file's, and the CPU time per face (all threads of this process): on a machine shared
with other work the wall-clock rate is the share of the CPU this process got, the CPU time per
face is nearly the same as on an idle machine, so ``cpu_ratio_to_first`` is the steadier
comparison there. Speed claims between model files are made with this command.

``--mirror-average both`` measures every file also as ``DAN_MIRROR_AVERAGE=true``
serves it (each face run mirrored too), next to the plain run: the cost of that
mode on this machine (``on``: that mode only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bench.load import EngineResult, measure_engine
from training.arguments import non_negative_int, positive_float, positive_int
from training.paths import DEFAULT_DATA_ROOT

if TYPE_CHECKING:
    from service.config import Provider

MirrorChoice = Literal["off", "on", "both"]
MIRROR_MODES: dict[MirrorChoice, tuple[bool, ...]] = {
    "off": (False,),
    "on": (True,),
    "both": (False, True),
}


def compare(
    models: list[Path],
    data_root: Path,
    seconds: float,
    rounds: int,
    provider: Provider,
    cpu_threads: int,
    max_batch_size: int | None,
    mirror_average: MirrorChoice = "off",
) -> list[dict[str, float | str | int]]:
    runs = [(m, mirror) for m in models for mirror in MIRROR_MODES[mirror_average]]
    results: dict[tuple[Path, bool], list[EngineResult]] = {run: [] for run in runs}
    for _ in range(rounds):
        for m, mirror in runs:
            results[m, mirror].append(
                measure_engine(
                    m,
                    data_root,
                    seconds,
                    provider=provider,
                    cpu_threads=cpu_threads,
                    max_batch_size=max_batch_size,
                    mirror_average=mirror,
                )
            )
    base = statistics.median(r.faces_per_s for r in results[runs[0]])
    base_cpu = statistics.median(r.cpu_ms_per_face for r in results[runs[0]])
    rows: list[dict[str, float | str | int]] = []
    for m, mirror in runs:
        rs = results[m, mirror]
        fps = statistics.median(r.faces_per_s for r in rs)
        cpu = statistics.median(r.cpu_ms_per_face for r in rs)
        rows.append(
            {
                "model": str(m),
                "mirror_average": str(mirror).lower(),
                "provider": rs[0].provider,
                "batch": rs[0].max_batch_size,
                "faces_per_s": round(fps, 1),
                "single_face_ms": round(statistics.median(r.single_face_ms for r in rs), 2),
                "ratio_to_first": round(fps / base, 2),
                "cpu_ms_per_face": round(cpu, 2),
                "cpu_ratio_to_first": round(base_cpu / cpu, 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("models", type=Path, nargs="+", help="ONNX files; the first is the baseline")
    p.add_argument(
        "--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W folder (boxes.csv)"
    )
    p.add_argument("--seconds", type=positive_float, default=6.0, help="seconds per file and round")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds over all files")
    p.add_argument(
        "--provider", choices=("cpu", "cuda", "tensorrt", "auto"), default="cpu", help="provider"
    )
    p.add_argument(
        "--cpu-threads", type=non_negative_int, default=0, help="CPU provider threads (0 = all)"
    )
    p.add_argument(
        "--max-batch-size", type=positive_int, default=None, help="default: the service's"
    )
    p.add_argument(
        "--mirror-average",
        choices=tuple(MIRROR_MODES),
        default="off",
        help="each file as DAN_MIRROR_AVERAGE=true serves it: on; both ways, in turns: both",
    )
    p.add_argument("--json-out", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    rows = compare(
        args.models,
        args.data_root,
        args.seconds,
        args.rounds,
        args.provider,
        args.cpu_threads,
        args.max_batch_size,
        args.mirror_average,
    )
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
