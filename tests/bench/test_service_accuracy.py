"""The service reproduces the evaluation command's numbers on the same images and boxes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.service_accuracy import COMPARED, main


def test_the_service_reproduces_the_evaluation(
    tiny_model: Path, data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "accuracy.json"
    code = main([f"--model={tiny_model}", f"--data-root={data_root}", "--limit=4", f"--json={out}"])
    report = json.loads(out.read_text())
    assert report["images"] == 4
    assert code == 0, report
    for key in COMPARED:
        assert abs(report["difference_points"][key]) <= 0.05, report
