"""Service fixtures: a few 300-W test faces, a running service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import MAIN_SETTINGS, RunningService, serving

from training.dataset import Sample, load_subset, read_box_csv


@pytest.fixture(scope="session")
def test_faces(data_root: Path) -> list[Sample]:
    """Five faces of the 300-W common test set, with landmarks and detector boxes."""
    boxes = read_box_csv(data_root / "boxes.csv")
    lfpw = load_subset(data_root, "lfpw_test", boxes)[:3]
    helen = load_subset(data_root, "helen_test", boxes)[:2]
    faces = [s for s in lfpw + helen if s.detector_box is not None]
    if len(faces) < 5:
        pytest.skip(
            f"expected 5 common-test faces with boxes under {data_root}, found {len(faces)}"
        )
    return faces


@pytest.fixture(scope="session")
def service(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """``python -m service`` serving the tiny model on a loopback port."""
    with serving(
        tmp_path_factory.mktemp("main-service"), model_path=tiny_model, **MAIN_SETTINGS
    ) as running:
        yield running
