"""training.paths: one default data root, found from the checkout whatever the current folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PRINT_DEFAULTS = """
from bench.calibrate_detector import get_args_parser as calibrate
from bench.load import get_args_parser as load
from training.config import TrainConfig
from training.paths import DEFAULT_DATA_ROOT
for root in (DEFAULT_DATA_ROOT, TrainConfig().data_root, load().parse_args([]).data_root,
             calibrate().parse_args([]).data_root):
    print(root)
"""


def test_every_command_finds_the_data_beside_the_checkout_from_any_folder(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's packages
    done = subprocess.run(
        [sys.executable, "-c", PRINT_DEFAULTS],
        cwd=tmp_path,  # not the repository: a relative default would point under here
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = str(REPO.parent / "shared" / "data" / "300w")
    assert done.stdout.split() == [expected] * 4, done.stdout
