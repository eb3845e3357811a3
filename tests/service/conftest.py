"""Service fixtures: a tiny exported DAN, a few 300-W test faces, a running service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from service_support import MAIN_SETTINGS, RunningService, launch

from training.dataset import Sample, load_subset, read_box_csv


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, mean_shape: np.ndarray) -> Path:
    """A small random 2-stage DAN exported by training.export, as the service reads it."""
    import torch

    from model.config import DANConfig
    from model.dan import DAN
    from training.export import export

    torch.manual_seed(0)
    model = DAN(
        DANConfig(widths=(8, 8, 8, 8), num_stages=2),
        mean_shape=torch.from_numpy(mean_shape).float(),
        mean_image=torch.full((112, 112), 110.0),
        std_image=torch.full((112, 112), 60.0),
    )
    model.eval()
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export(model, path, name="tiny", version="0.0.1")
    return path


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
    running = launch(
        tmp_path_factory.mktemp("main-service"), model_path=tiny_model, **MAIN_SETTINGS
    )
    try:
        running.wait_ready()
        yield running
    finally:
        code = running.stop()
        assert code == 0, f"service exited with {code}:\n{running.log()}"
