"""The summary of ``bench/gpu_check.sh``: one JSON and a short markdown table under ``$OUT``.

    python -m bench.gpu_summary OUT --steps STEPS.jsonl [--extra engine-tensorrt.json]

Reads what the check wrote (``env.json``, ``engine.json``, ``load.json``,
``load-detect.json``, ``gpu-tests.xml``) and the steps' exit codes, and writes
``summary.json`` (all of it, and whether the engine reached the issue's goal
of 5,000 faces/s) and ``summary.md``. Missing files are reported as missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

GOAL_FACES_PER_S = 5000.0


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_counts(path: Path) -> dict[str, int] | None:
    """Tests, failures, errors and skipped of a pytest JUnit XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def best_engine(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per file: its best faces/s and the batch size that gave it, its drift."""
    best = []
    for row in rows or []:
        if "error" in row:
            best.append({"model": Path(row["model"]).name, "error": row["error"][:300]})
            continue
        top = max(row["batches"], key=lambda b: b["faces_per_s"])
        best.append(
            {
                "model": Path(row["model"]).name,
                "precision": row["precision"],
                "provider": row["provider"],
                "faces_per_s": top["faces_per_s"],
                "batch": top["batch"],
                "inter_ocular": row.get("accuracy", {}).get("inter_ocular"),
                "drift_points": row.get("drift_points", {}).get("inter_ocular"),
            }
        )
    return best


def best_load(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    levels = result.get("levels", [])
    closed = [r for r in levels if not str(r.get("name", "")).startswith(("open", "4x"))]
    top = max(closed or levels, key=lambda r: r.get("faces_per_s", 0), default=None)
    overload = next((r for r in levels if "overload" in str(r.get("name", ""))), None)
    return {"engine": result.get("engine"), "best": top, "overload": overload}


def summarise(out: Path, steps: Path | None, extra: list[Path]) -> dict[str, Any]:
    engine_rows = read_json(out / "engine.json") or []
    for path in extra:
        more = read_json(path)
        if isinstance(more, list):
            engine_rows = [*engine_rows, *more]
    engine = best_engine(engine_rows)
    reached = max((e.get("faces_per_s", 0.0) for e in engine), default=0.0)
    return {
        "environment": read_json(out / "env.json"),
        "steps": [
            json.loads(line) for line in (steps.read_text().splitlines() if steps else []) if line
        ]
        if steps and steps.is_file()
        else [],
        "gpu_tests": test_counts(out / "gpu-tests.xml"),
        "engine_best": engine,
        "engine": engine_rows,
        "service_load": best_load(read_json(out / "load.json")),
        "service_load_detect": best_load(read_json(out / "load-detect.json")),
        "goal_faces_per_s": GOAL_FACES_PER_S,
        "goal_reached": reached >= GOAL_FACES_PER_S,
        "engine_faces_per_s_reached": reached,
    }


def markdown(summary: dict[str, Any]) -> str:
    env = summary.get("environment") or {}
    lines = [
        f"GPU check: {env.get('gpu', '?')}; onnxruntime {env.get('onnxruntime', '?')} "
        f"({', '.join(env.get('providers', []))}); budget {env.get('budget', '?')}",
        "",
        "| step | rc | s |",
        "| --- | --- | --- |",
        *[f"| {s['step']} | {s['rc']} | {s['seconds']} |" for s in summary["steps"]],
        "",
        f"GPU tests: {summary['gpu_tests']}",
        "",
        "| engine file | precision | provider | best faces/s | at batch | NME io % | drift |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in summary["engine_best"]:
        if "error" in e:
            lines.append(f"| {e['model']} | | | error: {e['error'][:100]} | | | |")
            continue
        nme = e["inter_ocular"]
        drift = e["drift_points"]
        lines.append(
            f"| {e['model']} | {e['precision']} | {e['provider']} | {e['faces_per_s']} | "
            f"{e['batch']} | {'' if nme is None else f'{100 * nme:.3f}'} | "
            f"{'' if drift is None else f'{drift:+.4f}'} |"
        )
    lines.append("")
    lines.append(
        f"engine goal {summary['goal_faces_per_s']:.0f} faces/s: "
        f"{'reached' if summary['goal_reached'] else 'not reached'} "
        f"({summary['engine_faces_per_s_reached']:.0f})"
    )
    for key, title in (("service_load", "boxes sent"), ("service_load_detect", "no boxes")):
        load = summary.get(key)
        if load and load.get("best"):
            best = load["best"]
            lines.append(
                f"service ({title}): {best.get('faces_per_s')} faces/s at concurrency "
                f"{best.get('concurrency')} (p50 {best.get('p50_ms')} ms); overload: "
                f"{(load.get('overload') or {}).get('other_kinds', '-')}"
            )
        else:
            lines.append(f"service ({title}): no result")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("out", type=Path, help="the check's output folder")
    p.add_argument("--steps", type=Path, default=None, help="steps.jsonl of the check")
    p.add_argument("--extra", type=Path, nargs="*", default=[], help="more engine JSON files")
    args = p.parse_args(argv)
    summary = summarise(args.out, args.steps, args.extra)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    (args.out / "summary.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
