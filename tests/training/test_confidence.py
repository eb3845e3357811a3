"""training.confidence and training.confidence_crops: the crops, the measures, the command."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_dan import tiny_dan

from model.geometry import bounding_box
from model.metadata import ModelMetadata, onnx_props
from training.augment import Face
from training.checkpoint import save_checkpoint
from training.confidence import fit_calibration, load_model, main
from training.confidence_crops import (
    BACKGROUND,
    BENCHMARK_PLAN,
    BOX,
    PERTURBED,
    SHIFTED,
    TRAINING_PLAN,
    auroc,
    background_box,
    choose_threshold,
    crop_errors,
    cut_crops,
    shifted_box,
    soft_targets,
)
from training.dataset import load_split, read_gray

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def faces(data_root: Path) -> list[Face]:
    samples = load_split(data_root, "training").samples[:6]
    return [Face(read_gray(s.image_path), s.landmarks, np.asarray(s.detector_box)) for s in samples]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_crops_of_every_kind_with_their_ground_truth(
    faces: list[Face], mean_shape: np.ndarray
) -> None:
    crops = cut_crops(faces, mean_shape, 112, TRAINING_PLAN, seed=0)
    per_face = len(TRAINING_PLAN.schedule())
    assert len(crops) == per_face * len(faces) and crops.pixels.shape[1:] == (112, 112)
    assert [int((crops.kinds == k).sum()) for k in (BOX, PERTURBED, SHIFTED, BACKGROUND)] == [
        n * len(faces) for n in (1, 2, 1, 1)
    ]
    background = crops.kinds == BACKGROUND
    assert np.isnan(crops.landmarks[background]).all()
    assert np.isfinite(crops.landmarks[~background]).all()
    # The face box's crop holds the face: its landmarks inside, near the mean shape.
    boxed = crops.landmarks[crops.kinds == BOX]
    assert ((boxed > 0) & (boxed < 111)).all()
    assert np.abs(boxed.mean(axis=1) - mean_shape.mean(axis=0)).max() < 15
    # A shifted box's crop holds at most part of the face: the landmarks' centre moved off.
    shifted = crops.landmarks[crops.kinds == SHIFTED].mean(axis=1)
    assert (np.linalg.norm(shifted - mean_shape.mean(axis=0), axis=1) > 25).all()
    # Errors: a perfect prediction scores 0, a background crop infinity.
    errors = crop_errors(np.nan_to_num(crops.landmarks), crops.landmarks)
    assert (errors[~background] == 0).all() and np.isinf(errors[background]).all()
    again = cut_crops(faces, mean_shape, 112, TRAINING_PLAN, seed=0)
    np.testing.assert_array_equal(again.pixels, crops.pixels)  # seeded


def test_the_benchmark_plan_uses_the_detector_box_as_it_is(
    faces: list[Face], mean_shape: np.ndarray
) -> None:
    from model.crop import crop_face

    crops = cut_crops(faces, mean_shape, 112, BENCHMARK_PLAN, seed=3)
    first = crops.pixels[crops.kinds == BOX]
    for face, pixels in zip(faces, first, strict=True):
        np.testing.assert_array_equal(
            pixels, crop_face(face.image, face.box, mean_shape, 112).pixels
        )


def test_shifted_and_background_boxes() -> None:
    rng = np.random.default_rng(0)
    box = np.array([100.0, 100.0, 200.0, 200.0])
    for _ in range(100):
        moved = shifted_box(box, rng, (1.0, 2.0))
        distance = np.linalg.norm(moved[:2] - box[:2])
        assert 100.0 - 1e-9 <= distance <= 200.0 + 1e-9
        assert moved[2] - moved[0] == pytest.approx(100.0)
    landmarks = np.array([[110.0, 120.0], [190.0, 185.0]])
    lx0, ly0, lx1, ly1 = bounding_box(landmarks)
    for _ in range(100):
        found = background_box(box, landmarks, (600, 600), rng)
        assert found is not None
        x0, y0, x1, y1 = found
        assert min(x0, y0) >= 0 and max(x1, y1) <= 600
        assert x1 < lx0 or x0 > lx1 or y1 < ly0 or y0 > ly1  # no overlap with the face
    assert background_box(box, landmarks, (90, 90), rng) is None  # no room for a face-sized box


def test_auroc_against_counting_pairs() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=300), 1)  # with ties
    positives = rng.random(300) < 0.3 + 0.4 * (scores > 0)
    pairs = scores[positives][:, None] - scores[~positives][None, :]
    expected = ((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size
    assert auroc(scores, positives) == pytest.approx(expected)
    assert auroc(np.arange(4.0), np.array([False, False, True, True])) == 1.0
    assert auroc(np.arange(4.0), np.array([True, True, False, False])) == 0.0
    assert np.isnan(auroc(np.arange(3.0), np.ones(3, dtype=bool)))


def test_soft_targets_and_the_threshold_rule() -> None:
    errors = np.array([0.01, 0.05, 0.065, 0.08, 0.2, np.inf])
    np.testing.assert_allclose(soft_targets(errors), [1, 1, 0.5, 0, 0, 0])
    confidence = np.linspace(0.5, 0.99, 100)
    assert choose_threshold(confidence, 0.0) == 0.5  # none of them below
    assert choose_threshold(confidence, 0.05) == pytest.approx(0.52)  # 5 below 0.5247...
    with pytest.raises(ValueError, match="no faces"):
        choose_threshold(np.array([]), 0.01)


def test_platt_scaling_recovers_a_known_calibration() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 3.0, 20000)
    labels = (rng.random(20000) < 1.0 / (1.0 + np.exp(-(0.5 * z - 1.0)))).astype(float)
    a, b = fit_calibration(z, labels)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(-1.0, abs=0.05)


def _tiny_checkpoint(path: Path, mean_shape: np.ndarray) -> Path:
    save_checkpoint(path, tiny_dan(mean_shape, fc_units=16, seed=1))
    return path


@pytest.mark.parametrize("source", ["onnx", "pt"])
def test_the_command_adds_a_confidence_output_and_leaves_the_landmarks_as_they_were(
    tiny_model: Path,
    data_root: Path,
    mean_shape: np.ndarray,
    tmp_path: Path,
    source: str,
) -> None:
    model = tiny_model if source == "onnx" else _tiny_checkpoint(tmp_path / "t.pt", mean_shape)
    out = tmp_path / "with-confidence.onnx"
    main(
        [
            "--model", str(model), "--data-root", str(data_root), "--out", str(out),
            "--limit", "14", "--val-count", "4", "--threads", "1", "--epochs", "3",
        ]
    )  # fmt: skip
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["landmarks", "stage_landmarks", "confidence"]
    metadata = ModelMetadata.from_onnx_props(onnx_props(proto), out)
    assert metadata.confidence is not None
    assert 0.0 <= metadata.confidence.threshold <= 1.0
    assert "logistic regression" in metadata.confidence.method
    held_out = metadata.confidence.measured["held_out_training_images"]
    assert held_out["images"] == 4 and held_out["faces"] == 8 and held_out["non_faces"] == 32
    if source == "onnx":
        original = ModelMetadata.from_onnx_props(onnx_props(onnx.load(str(tiny_model))))
        assert (metadata.name, metadata.version) == (original.name, original.version)
    x = (np.random.default_rng(0).uniform(0, 255, (5, 1, 112, 112))).astype(np.float32)
    landmarks, confidence = _session(out).run(["landmarks", "confidence"], {"images": x})
    assert confidence.shape == (5,) and ((confidence >= 0) & (confidence <= 1)).all()
    dan = load_model(model).dan
    with torch.no_grad():
        expected = dan(torch.from_numpy(x))[-1].numpy()
    np.testing.assert_allclose(landmarks, expected, atol=0.05)  # fp16 storage of fp32 weights
    if source == "onnx":
        (before,) = _session(tiny_model).run(["landmarks"], {"images": x})
        np.testing.assert_allclose(landmarks, before, atol=1e-4)  # the same network
