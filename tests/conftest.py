"""Shared fixtures: where the 300-W data is, a realistic mean shape, a tiny exported DAN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "data" / "300w"
RELEASED_MODEL = REPO / "model" / "dan-300w.onnx"


def require_data() -> Path:
    if not (DATA_ROOT / "boxes.csv").is_file():
        pytest.skip(
            f"300-W data not found at {DATA_ROOT} (expected ../shared/data/300w beside the repo)"
        )
    return DATA_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def mean_shape() -> np.ndarray:
    """A canonical mean shape from the first training shapes (or a synthetic face if no data)."""
    from training.dataset import load_subset, read_box_csv
    from training.mean_shape import canonical_mean_shape

    root = require_data()
    samples = load_subset(root, "afw", read_box_csv(root / "boxes.csv"))[:50]
    return canonical_mean_shape(np.stack([s.landmarks for s in samples]))


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


@pytest.fixture
def mini_300w(data_root: Path, tmp_path: Path) -> Path:
    """A 300-W tree of symbolic links to a dozen real training and three common-test images."""
    folder = tmp_path / "300w"
    for subset, count in (("afw", 6), ("lfpw/trainset", 6), ("lfpw/testset", 3)):
        (folder / subset).mkdir(parents=True)
        for pts in sorted((data_root / subset).glob("*.pts"))[:count]:
            for f in (pts, pts.with_suffix(".jpg"), pts.with_suffix(".png")):
                if f.exists():
                    (folder / subset / f.name).symlink_to(f)
    (folder / "boxes.csv").symlink_to(data_root / "boxes.csv")
    return folder
