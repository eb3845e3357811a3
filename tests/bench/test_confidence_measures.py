"""bench.confidence: the issue's measures of a model file's confidence, on real 300-W test photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from bench.confidence import ACCEPTANCE, main, measure, report, write_measured
from model.metadata import ModelMetadata, onnx_props
from training import confidence


@pytest.fixture(scope="module")
def confidence_model(
    tiny_model: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny random DAN with a head trained by the real command on a few training images."""
    out = tmp_path_factory.mktemp("bench-confidence") / "tiny-confidence.onnx"
    confidence.main(
        [
            "--model", str(tiny_model), "--data-root", str(data_root), "--out", str(out),
            "--limit", "12", "--val-count", "4", "--threads", "1", "--epochs", "2",
        ]
    )  # fmt: skip
    return out


def test_the_measures_of_the_issue_on_a_few_common_photos(
    confidence_model: Path, data_root: Path
) -> None:
    summary = measure(confidence_model, data_root, limit=5, threads=1)
    assert (summary["images"], summary["faces"], summary["perturbed"]) == (5, 5, 5)
    assert summary["non_faces"] == 20  # two shifted and two background boxes per face
    for key in ("faces_below_threshold", "non_faces_below_threshold", "shifted_below_threshold"):
        assert 0.0 <= summary[key] <= 1.0
    assert set(summary["acceptance"]) == {key for key, _, _ in ACCEPTANCE}
    text = report(summary)
    assert "AUROC" in text and "non-faces below the threshold" in text
    # A threshold of 1 puts every crop below it; 0 none.
    everything = measure(confidence_model, data_root, threshold=1.0, limit=5, threads=1)
    assert everything["non_faces_below_threshold"] == 1.0
    assert everything["faces_below_threshold"] == 1.0
    assert not everything["acceptance"]["faces_below_threshold"]


def test_the_numbers_go_into_the_model_file(
    confidence_model: Path, data_root: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.onnx"
    shutil.copy(confidence_model, copy)
    summary = measure(copy, data_root, limit=3, threads=1)
    write_measured(copy, summary)
    metadata = ModelMetadata.from_onnx_props(onnx_props(onnx.load(str(copy))))
    assert metadata.confidence is not None
    measured = metadata.confidence.measured
    assert measured["common"]["images"] == 3
    assert "held_out_training_images" in measured  # what the command measured stays


def test_a_model_without_confidence_is_refused(tiny_model: Path, data_root: Path) -> None:
    with pytest.raises(SystemExit, match="no confidence output"):
        main(["--model", str(tiny_model), "--data-root", str(data_root), "--limit", "2"])
