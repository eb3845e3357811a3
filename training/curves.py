"""Validation curves of training runs: NME against samples seen and against minutes.

    python -m training.curves "half from random=../shared/checkpoints/dan-300w-half-2026-12.log.jsonl@32" \
        "v1.1.0 (full width)=model/training-log-v1.jsonl,model/training-log-v2.jsonl@32" \
        --out model/experiments/curves.png

Each argument is ``LABEL=LOG[,LOG...][@BATCH]``: the ``log.jsonl`` files of
one run (several when a run continued another with ``--init``), in order, and
its batch size where the logs predate their ``samples`` field. Samples and
minutes add up across phases and files, so a continued run's curve starts
where its predecessor's ended. The plotted error of a record is that of the
last stage its phase trains (stage 1 in ``stage1``, stage 2 in ``stage2`` and
``finetune``). ``--table`` prints the best point of every phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("training.curves")


@dataclass(frozen=True)
class Point:
    phase: str
    segment: int  # counts phases over the run's logs: a continued run's stage1 is another segment
    samples: int  # cumulative over the run
    minutes: float  # cumulative over the run
    nme: float  # inter-ocular, fraction


@dataclass(frozen=True)
class RunSpec:
    label: str
    logs: tuple[Path, ...]
    batch_size: int | None


def parse_spec(text: str) -> RunSpec:
    """``LABEL=LOG[,LOG...][@BATCH]``."""
    if "=" not in text:
        raise ValueError(f"expected LABEL=LOG[,LOG...][@BATCH], got {text!r}")
    label, rest = text.split("=", 1)
    batch: int | None = None
    if "@" in rest:
        rest, b = rest.rsplit("@", 1)
        batch = int(b)
    return RunSpec(label, tuple(Path(p) for p in rest.split(",") if p), batch)


def read_points(spec: RunSpec) -> list[Point]:
    points: list[Point] = []
    samples_offset, minutes_offset, segment = 0, 0.0, -1
    for path in spec.logs:
        phase, last_samples, last_minutes = None, 0, 0.0
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r["phase"] != phase:
                samples_offset += last_samples
                minutes_offset += last_minutes
                last_samples, last_minutes = 0, 0.0
                phase = r["phase"]
                segment += 1
            if "samples" in r:
                samples = int(r["samples"])
            elif spec.batch_size is not None:
                samples = int(r["step"]) * spec.batch_size
            else:
                raise ValueError(f"{path} has no 'samples' field: give the run's @BATCH")
            last_samples, last_minutes = samples, float(r["elapsed_s"]) / 60
            stages = sorted(k for k in r if k.startswith("stage") and k.endswith("_io"))
            points.append(
                Point(
                    str(phase),
                    segment,
                    samples_offset + samples,
                    minutes_offset + last_minutes,
                    r[stages[-1]],
                )
            )
        samples_offset += last_samples
        minutes_offset += last_minutes
    return points


def best_per_phase(points: list[Point]) -> list[Point]:
    best: dict[int, Point] = {}
    order: list[int] = []
    for p in points:
        key = p.segment
        if key not in best:
            order.append(key)
        if key not in best or p.nme < best[key].nme:
            best[key] = p
    return [best[k] for k in order]


def plot(runs: dict[str, list[Point]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(runs) > len(colours):  # more runs than the cycle: one distinct colour each
        colours = [plt.get_cmap("tab20")(i % 20) for i in range(len(runs))]
    for i, (label, points) in enumerate(runs.items()):
        colour = colours[i % len(colours)]
        for segment in sorted({p.segment for p in points}):
            part = [p for p in points if p.segment == segment]
            style = "--" if part[0].phase == "stage1" else "-"
            for ax, x in (
                (axes[0], [p.samples / 1e3 for p in part]),
                (axes[1], [p.minutes for p in part]),
            ):
                ax.plot(
                    x,
                    [100 * p.nme for p in part],
                    style,
                    color=colour,
                    marker=".",
                    markersize=3,
                    label=label if segment == points[0].segment else None,
                )
    axes[0].set_xlabel("training samples seen (thousands)")
    axes[1].set_xlabel("minutes of training")
    axes[0].set_ylabel("validation NME, inter-ocular (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_ylim(top=min(10.0, ax.get_ylim()[1]))
    axes[1].legend(fontsize=8, title="dashed: stage 1 alone; solid: both stages", title_fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Plot validation NME of training runs against samples and minutes."
    )
    p.add_argument("runs", nargs="+", help="LABEL=LOG[,LOG...][@BATCH], one per run")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--title", default="DAN validation error (100 held-out 300-W training images)")
    p.add_argument("--table", action="store_true", help="print the best point of every phase")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        runs = {s.label: read_points(s) for s in map(parse_spec, args.runs)}
    except (ValueError, OSError, KeyError) as e:
        p.error(str(e))
    plot(runs, args.out, args.title)
    log.info("wrote %s", args.out)
    if args.table:
        rows = ["| run | phase | best val NME % | at samples (k) | at minute |", "| --- " * 5 + "|"]
        for label, points in runs.items():
            for b in best_per_phase(points):
                rows.append(
                    f"| {label} | {b.phase} | {100 * b.nme:.2f} | {b.samples / 1e3:.0f} "
                    f"| {b.minutes:.1f} |"
                )
        sys.stdout.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
