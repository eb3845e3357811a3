"""training.evaluate: the serving install (no torch, onnx or matplotlib) evaluates a model file.

The torch-free runs are child processes whose imports of the ``train``
extra's packages fail, as they would where only ``pip install -e '.[cpu]'``
was run; their numbers must be the in-process evaluation's.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from model.landmarks import mirror_landmarks
from model.metadata import ModelMetadata, onnx_props
from training.evaluate import OnnxModel, evaluate, predict, write_accuracy

REPO = Path(__file__).resolve().parents[2]
# The train extra: absent from the serving install.
BLOCKED = ("torch", "onnx", "matplotlib", "tqdm")
BLOCKER = f"""
import importlib.abc
import runpy
import sys


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Blocked())
"""


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return run_blocked(
        "runpy.run_module('training.evaluate', run_name='__main__', alter_sys=True)", *args
    )


def test_the_blocked_packages_cannot_be_imported() -> None:
    for name in BLOCKED:
        done = run_blocked(f"import {name}")
        assert done.returncode != 0 and "blocked by the test" in done.stderr, (name, done.stderr)


def test_evaluate_runs_without_torch_and_gives_the_same_numbers(
    tiny_model: Path, data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    done = run_evaluate(
        str(tiny_model),
        f"--data-root={data_root}",
        "--split=common",
        "--limit=3",
        "--threads=1",
        f"--output-dir={out}",
    )
    assert done.returncode == 0, done.stderr
    assert "common: 3 images, boxes from file" in done.stdout
    assert "stage 1" in done.stdout and "stage 2" in done.stdout
    assert "ced.png not written: plotting needs matplotlib" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["model_name"], summary["model_version"]) == ("tiny", "0.0.1")
    with (out / "per_image.csv").open() as f:
        assert len(list(csv.reader(f))) == 1 + 3
    assert not (out / "ced.png").exists()
    # The same evaluation, in this process (torch loaded): the same numbers.
    reference = evaluate(tiny_model, data_root, "common", threads=1, limit=3)
    for stage, row in reference["stages"].items():
        for key, value in row.items():
            assert summary["stages"][stage][key] == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_write_metadata_without_onnx_says_what_it_needs(tiny_model: Path) -> None:
    done = run_evaluate(str(tiny_model), "--limit=1", "--write-metadata")
    assert done.returncode != 0
    assert "--write-metadata needs the onnx package" in done.stderr


def test_the_accuracy_benchmarks_and_the_service_import_without_torch() -> None:
    modules = [
        "bench.service_accuracy",
        "bench.detector_accuracy",
        "bench.detectors",
        "bench.calibrate_detector",
        "bench.load",
        "service.app",
        "training.evaluate",
        "training.dataset",
        "training.augment",
        "model.crop",
        "model.grayscale",
        "model.metadata",
    ]
    done = run_blocked("".join(f"import {m}\n" for m in modules))
    assert done.returncode == 0, done.stderr


def test_write_accuracy_changes_only_the_accuracy(
    tiny_model: Path, data_root: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.onnx"
    shutil.copyfile(tiny_model, model)
    before = onnx_props(onnx.load(str(model)))
    summary = evaluate(model, data_root, "common", threads=1, limit=2)
    write_accuracy(model, summary)
    after = onnx_props(onnx.load(str(model)))
    assert {k: v for k, v in after.items() if k != "dan.accuracy"} == {
        k: v for k, v in before.items() if k != "dan.accuracy"
    }
    accuracy = ModelMetadata.from_onnx_props(after, model).accuracy
    assert accuracy["common"]["images"] == 2
    assert accuracy["common"]["inter_ocular"] == summary["inter_ocular"]


def test_the_mirror_average_answers_a_mirrored_face_with_the_mirrored_landmarks(
    symmetric_tiny_model: Path,
) -> None:
    # With a symmetric mean shape, the crop of the mirrored image (mirrored box) is the
    # mirrored crop: averaging each crop with its mirror must make the answers mirror
    # each other, which the random network alone does not.
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (180, 200), dtype=np.uint8), (0, 0), 3)
    width = image.shape[1]
    box = np.array([40.0, 30.0, 150.0, 145.0])
    mirrored_box = np.array([width - 1 - box[2], box[1], width - 1 - box[0], box[3]])
    mirrored_image = np.ascontiguousarray(image[:, ::-1])
    model = OnnxModel.load(symmetric_tiny_model, threads=1)

    def gap(mirror_average: bool) -> float:
        plain = predict(model, [image], [box], 1, mirror_average)[0]  # (stages, 68, 2)
        flipped = predict(model, [mirrored_image], [mirrored_box], 1, mirror_average)[0]
        return float(np.abs(mirror_landmarks(flipped, width) - plain).max())

    assert gap(mirror_average=True) < 0.05 < 0.5 < gap(mirror_average=False)


def test_mirror_average_is_reported_and_refused_with_write_metadata(
    tiny_model: Path, data_root: Path
) -> None:
    summary = evaluate(tiny_model, data_root, "common", threads=1, limit=2, mirror_average=True)
    assert summary["mirror_average"] is True
    assert "each averaged with its mirror" in summary["report"]
    plain = evaluate(tiny_model, data_root, "common", threads=1, limit=2)
    assert plain["mirror_average"] is False
    assert plain["inter_ocular"] != summary["inter_ocular"]
    done = run_evaluate(str(tiny_model), "--limit=1", "--write-metadata", "--mirror-average")
    assert done.returncode == 2
    assert "--mirror-average measures something else" in done.stderr
