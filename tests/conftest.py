"""Shared fixtures: where the 300-W data is, a few test faces, a mean shape, a tiny exported DAN.

Two data roots, so that a test says what it needs:

- ``data_root``: the real 300-W folder (``--data-root``, default ``../shared/data/300w``
  beside the checkout, ``training.paths.DEFAULT_DATA_ROOT``); without it the test is skipped,
  saying so. For what needs real faces: a trained model's accuracy, face detection and the
  detector's calibration (``real_test_faces`` too).
- ``any_data_root``: the real folder when it is there, else the small synthetic tree of
  ``synthetic_300w`` (drawn faces, the official layout) written once per session. For code
  paths: loading, cropping, decoding, serving, benchmarks, training steps (``test_faces``,
  ``mean_shape``, ``tiny_model``, ``symmetric_tiny_model`` and ``mini_300w`` build on it, so
  they exist on any machine).

``pytest --data-root=/nowhere`` runs the suite as a machine without the data does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_300w import write_synthetic_300w

from training.dataset import Sample
from training.paths import DEFAULT_DATA_ROOT

REAL_FACES_NEEDED = (
    "needs the real 300-W faces (a trained model's accuracy, face detection or its "
    "calibration: the synthetic faces are drawn, not photographed)"
)


# Shared fixtures that start a real service process: a test using one is a process test too.
PROCESS_FIXTURES = frozenset({"service", "container_service"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "process: starts real service processes (scripts/stress_process_tests.sh runs these)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA_ROOT,
        help="the real 300-W folder (default: ../shared/data/300w beside the checkout); a path "
        "without boxes.csv runs the suite as without the data (synthetic faces, or a skip)",
    )


def _real_root(config: pytest.Config) -> Path | None:
    root: Path = config.getoption("data_root")
    return root if (root / "boxes.csv").is_file() else None


@pytest.fixture(scope="session")
def data_root(pytestconfig: pytest.Config) -> Path:
    """The real 300-W folder; the test is skipped, with the reason, without it."""
    root = _real_root(pytestconfig)
    if root is None:
        pytest.skip(f"{REAL_FACES_NEEDED}; not found at {pytestconfig.getoption('data_root')}")
    return root


@pytest.fixture(scope="session")
def any_data_root(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 300-W folder if it is there, else a synthetic one in the same layout."""
    root = _real_root(pytestconfig)
    if root is not None:
        return root
    return write_synthetic_300w(tmp_path_factory.mktemp("synthetic-300w"))


def _common_test_faces(root: Path) -> list[Sample]:
    from bench.samples import boxed_faces

    faces = boxed_faces(root, ["lfpw_test"], 3) + boxed_faces(root, ["helen_test"], 2)
    assert len(faces) == 5, f"expected 3 + 2 common-test faces with boxes under {root}"
    return faces


@pytest.fixture(scope="session")
def test_faces(any_data_root: Path) -> list[Sample]:
    """Five common-test faces (3 of lfpw/testset, 2 of helen/testset) with landmarks and
    detector boxes: real ones, or synthetic ones without the data."""
    return _common_test_faces(any_data_root)


@pytest.fixture(scope="session")
def real_test_faces(data_root: Path) -> list[Sample]:
    """The same five faces, from the real data only (skipped without it)."""
    return _common_test_faces(data_root)


@pytest.fixture(scope="session")
def mean_shape(any_data_root: Path) -> np.ndarray:
    """The canonical mean shape of the first AFW training shapes (50 real, or the synthetic)."""
    from training.dataset import load_boxes, load_subset
    from training.mean_shape import canonical_mean_shape

    samples = load_subset(any_data_root, "afw", load_boxes(any_data_root))[:50]
    return canonical_mean_shape(np.stack([s.landmarks for s in samples]))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, mean_shape: np.ndarray) -> Path:
    """A small random 2-stage DAN exported by training.export, as the service reads it."""
    from tiny_dan import tiny_dan

    from training.export import export

    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export(tiny_dan(mean_shape), path, name="tiny", version="0.0.1")
    return path


@pytest.fixture(scope="session")
def symmetric_tiny_model(tmp_path_factory: pytest.TempPathFactory, mean_shape: np.ndarray) -> Path:
    """A small random 2-stage DAN whose mean shape is its own mirror image, and whose
    answers depend on the face (random output layers; a new DAN's are zero)."""
    import torch
    from tiny_dan import tiny_dan

    from model.landmarks import mirror_landmarks
    from training.export import export

    model = tiny_dan(0.5 * (mean_shape + mirror_landmarks(mean_shape, 112)), seed=1)
    with torch.no_grad():
        for stage in model.stages:
            stage.fc2.weight.normal_(std=0.05)
    path = tmp_path_factory.mktemp("models") / "symmetric.onnx"
    export(model, path, name="symmetric", version="0.0.1")
    return path


@pytest.fixture
def mini_300w(any_data_root: Path, tmp_path: Path) -> Path:
    """A 300-W tree of symbolic links to a dozen training and three common-test images (real,
    or the synthetic ones without the data: the training code paths, not its accuracy)."""
    folder = tmp_path / "300w"
    for subset, count in (("afw", 6), ("lfpw/trainset", 6), ("lfpw/testset", 3)):
        (folder / subset).mkdir(parents=True)
        for pts in sorted((any_data_root / subset).glob("*.pts"))[:count]:
            for f in (pts, pts.with_suffix(".jpg"), pts.with_suffix(".png")):
                if f.exists():
                    (folder / subset / f.name).symlink_to(f)
    (folder / "boxes.csv").symlink_to(any_data_root / "boxes.csv")
    return folder
