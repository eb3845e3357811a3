"""training.confidence_study: the harder crops and the variants' table, on a tiny network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.augment import Face
from training.confidence import load_model
from training.confidence_crops import BOX, DETECTOR_JITTER, CropPlan, cut_crops
from training.confidence_study import HARDER_KINDS, VARIANTS, harder_crops, main
from training.dataset import load_split, read_gray


@pytest.fixture(scope="module")
def faces(any_data_root: Path) -> list[Face]:
    samples = load_split(any_data_root, "training").samples[:3]
    return [Face(read_gray(s.image_path), s.landmarks, np.asarray(s.detector_box)) for s in samples]


def test_harder_crops_are_face_boxes_and_the_degraded_ones_only_change_their_look(
    tiny_model: Path, faces: list[Face]
) -> None:
    dan = load_model(tiny_model).dan
    moderate = harder_crops(dan, faces, "moderate", 2, 0.0, seed=1, threads=1)
    assert len(moderate.crops) == 6 and (moderate.crops.kinds == BOX).all()
    assert moderate.errors.shape == (6,) and np.isfinite(moderate.errors).all()
    degraded = harder_crops(dan, faces, "degraded", 2, 0.0, seed=1, threads=1)
    plan = CropPlan(
        box=2,
        perturbed=0,
        shifted=0,
        background=0,
        box_jitter=DETECTOR_JITTER,
        mirror_probability=0.0,
    )
    plain = cut_crops(faces, dan.mean_shape.double().numpy(), 112, plan, seed=1)
    np.testing.assert_array_equal(degraded.crops.landmarks, plain.landmarks)  # the same boxes
    for changed, original in zip(degraded.crops.pixels, plain.pixels, strict=True):
        assert (changed != original).mean() > 0.01  # an occluding block at least


def test_the_command_measures_every_variant_on_the_held_out_crops(
    tiny_model: Path, any_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study.json"
    main(
        [
            "--model", str(tiny_model), "--data-root", str(any_data_root), "--limit", "10",
            "--val-count", "3", "--threads", "1", "--epochs", "2", "--output", str(out),
        ]
    )  # fmt: skip
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == [" + ".join(("recipe", *v)) for v in VARIANTS]
    # 7 training faces: 5 crops each by the plan, one more per harder kind in the variant.
    assert [r["training_crops"] for r in rows] == [35 + 7 * len(v) for v in VARIANTS]
    for r in rows:
        assert r["faces"] == 6 and r["non_faces"] == 24  # 3 held-out images and their mirrors
        assert 0.0 <= r["threshold"] <= 1.0
        for kind in HARDER_KINDS:
            assert r[f"{kind}_crops"] == 18  # 3 per held-out face
    table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == 2 + len(VARIANTS) and table[2].startswith("| recipe |")
