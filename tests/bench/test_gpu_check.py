"""bench/gpu_check.sh end to end on the CPU (PROVIDER=cpu, a budget of seconds): its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu_and_writes_its_summary(
    tiny_model: Path, mini_300w: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DAN_")},
        "OUT": str(out),
        "PYTHON": sys.executable,
        "TMPDIR": str(tmp_path),
        "PROVIDER": "cpu",
        "BUDGET": "tiny",
        "DATA": str(mini_300w),
        "MODEL": str(tiny_model),
    }
    result = subprocess.run(
        ["bash", "bench/gpu_check.sh"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + log
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s["rc"] for s in summary["steps"]}
    assert steps == {
        "install": 0, "environment": 0, "gpu-tests": 0, "fp16-model": 0, "engine": 0,
        "load": 0, "load-detect": 0,
    }, log  # fmt: skip
    assert summary["environment"]["provider"] == "cpu"
    tests = summary["gpu_tests"]
    assert tests is not None and tests["failures"] == 0 and tests["errors"] == 0
    assert tests["skipped"] == tests["tests"]  # no CUDA here: every GPU test skips, none fails
    engine = summary["engine"]
    assert [row["precision"] for row in engine] == ["float32", "float16"]
    for row in engine:
        assert [b["batch"] for b in row["batches"]] == [1, 2]
        assert all(b["faces_per_s"] > 0 for b in row["batches"])
        assert row["accuracy"]["images"] == 3
    assert "inter_ocular" in engine[1]["drift_points"]
    assert summary["service_load"]["best"]["ok"] > 0
    # box-less requests (CenterFace) answered or not within the tiny budget on a busy CPU
    assert summary["service_load_detect"]["best"]["concurrency"] == 2
    assert summary["goal_reached"] is False
    table = (out / "summary.md").read_text()
    assert "| engine file |" in table and "float16" in table
    names = {p.name for p in out.iterdir()}
    assert names <= {"summary.md", "summary.json", "engine.json", "load.json",
                     "load-detect.json", "gpu-tests.xml", "env.json", "log.txt"}  # fmt: skip
    assert len(names) <= 8  # the device tool brings 8 files back
