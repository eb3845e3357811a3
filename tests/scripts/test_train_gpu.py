"""scripts/train_gpu.sh end to end on the CPU: pack, train a few seconds, export, evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.dataset import load_split
from training.pack import pack

REPO = Path(__file__).resolve().parents[2]


def test_packed_faces_keep_their_landmarks_on_the_same_image_content(
    mini_300w: Path, tmp_path: Path
) -> None:
    root = mini_300w
    assert pack(root, tmp_path / "packed", ("training", "common"), size=160) == 15
    original = {s.name: s for s in load_split(root, "common").samples}
    packed = load_split(tmp_path / "packed", "common").samples
    assert len(packed) == 3
    for p in packed:
        o = original[p.name]
        assert p.detector_box is not None and o.detector_box is not None
        # The same similarity (scale + shift) maps landmarks and box.
        scale = np.ptp(p.landmarks[:, 0]) / np.ptp(o.landmarks[:, 0])
        shift = p.landmarks - o.landmarks * scale
        np.testing.assert_allclose(shift, shift[:1].repeat(68, axis=0), atol=2e-3)
        np.testing.assert_allclose(
            p.detector_box.reshape(2, 2), o.detector_box.reshape(2, 2) * scale + shift[0], atol=2e-3
        )
        # The pixels under the landmarks are the original's pixels there.
        image = cv2.imread(str(p.image_path), cv2.IMREAD_GRAYSCALE)
        source = cv2.imread(str(o.image_path), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (160, 160)
        x, y = np.round(p.landmarks[30]).astype(int)  # nose tip
        u, v = np.round(o.landmarks[30]).astype(int)
        patch = source[v - 4 : v + 5, u - 4 : u + 5].astype(float).mean()
        assert abs(float(image[y, x]) - patch) < 25


@pytest.mark.slow
def test_gpu_script_trains_exports_and_evaluates_on_cpu(mini_300w: Path, tmp_path: Path) -> None:
    root = mini_300w
    pack(root, tmp_path / "packed")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        ["bash", "scripts/train_gpu.sh", "0.05", "none", str(tmp_path / "packed"),
         "--val-count", "2", "--batch-size", "4", "--widths", "4", "4", "8", "8",
         "--norm-crops-per-image", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    phases = [json.loads(line)["phase"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"stage1", "stage2", "finetune"} <= set(phases)
    summary = json.loads((out / "common.json").read_text())
    assert summary["images"] == 3
    assert (out / "dan-300w-gpu.onnx").stat().st_size > 10_000
    assert "torch" in (out / "env.txt").read_text()


def test_gpu_script_refuses_to_start_without_packed_data(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "scripts/train_gpu.sh", "1", "none", str(tmp_path / "absent")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "run scripts/prepare_gpu.sh first" in result.stderr


@pytest.mark.slow
def test_experiments_script_runs_variants_and_plots_them(mini_300w: Path, tmp_path: Path) -> None:
    root = mini_300w
    out = tmp_path / "exp"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA_ROOT": str(root),
        "EXTRA_FLAGS": "--val-count 2 --batch-size 4 --widths 4 4 8 8 --norm-crops-per-image 1",
    }
    result = subprocess.run(
        ["bash", "scripts/experiments.sh", "0.02", "none", str(out), "recipe", "wing"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "| recipe | stage1 |" in result.stdout and "| wing | stage1 |" in result.stdout
    assert (out / "curves.png").stat().st_size > 10_000
    unknown = subprocess.run(
        ["bash", "scripts/experiments.sh", "1", "none", str(out), "bogus"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2 and "unknown variant bogus" in unknown.stderr
