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
