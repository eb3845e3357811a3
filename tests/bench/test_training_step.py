"""bench.training_step: both ways of training stage 2 are timed on a real (tiny) model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.training_step import main
from training.dataset import load_split


def test_fresh_crops_and_the_pool_are_both_timed(mini_300w: Path, tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    main(
        [
            "--steps", "2", "--rounds", "2", "--json-out", str(out), "--data-root",
            str(mini_300w), "--widths", "4", "4", "8", "8", "--batch-size", "4", "--val-count",
            "2", "--norm-crops-per-image", "1",
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert len(result["fresh_img_s"]) == len(result["pool_img_s"]) == 2
    assert all(x > 0 for x in result["fresh_img_s"] + result["pool_img_s"])
    assert result["ratio_median"] > 0 and result["widths"] == [4, 4, 8, 8]
    faces = len(load_split(mini_300w, "training").samples) - 2  # two held out for validation
    assert result["pool_crops"] == faces  # one crop per face by default


def test_a_one_stage_model_is_refused(mini_300w: Path) -> None:
    with pytest.raises(SystemExit, match="expected a model of 2 or more stages, got 1"):
        main(["--data-root", str(mini_300w), "--num-stages", "1", "--stages", "1",
              "--stage-steps", "1", "--widths", "4", "4", "8", "8", "--val-count", "2"])  # fmt: skip


def test_counts_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--rounds", "0"])
    assert "argument --rounds: expected a whole number >= 1, got '0'" in capsys.readouterr().err
