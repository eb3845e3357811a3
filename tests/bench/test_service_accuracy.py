"""The service reproduces the evaluation command's numbers on the same images and boxes.

A tiny random model on real or synthetic faces: the numbers are poor, but the service's and
the evaluation's must be the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.service_accuracy import COMPARED, main

pytestmark = pytest.mark.process


def test_the_service_reproduces_the_evaluation(
    tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "accuracy.json"
    args = [f"--model={tiny_model}", f"--data-root={any_data_root}", "--limit=4", f"--json={out}"]
    code = main(args)
    report = json.loads(out.read_text())
    assert report["images"] == 4
    assert code == 0, report
    for key in COMPARED:
        assert abs(report["difference_points"][key]) <= 0.05, report


def test_the_mirror_averaging_service_reproduces_the_mirror_averaged_evaluation(
    symmetric_tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    # A model whose answers depend on the face, so that mirror averaging changes them.
    out, plain_out = tmp_path / "mirror.json", tmp_path / "plain.json"
    args = [f"--model={symmetric_tiny_model}", f"--data-root={any_data_root}", "--limit=4"]
    code = main([*args, "--mirror-average", f"--json={out}"])
    report = json.loads(out.read_text())
    assert report["mirror_average"] is True
    assert code == 0, report
    assert main([*args, f"--json={plain_out}"]) == 0
    plain = json.loads(plain_out.read_text())
    assert plain["service"]["inter_ocular"] != report["service"]["inter_ocular"]
