"""The upload fuzz target (``fuzz_uploads.py``, atheris) runs in CI for a few seconds.

On a copy of the corpus (libFuzzer adds what it finds to its first corpus folder; the repo's
stays as committed), with findings written to the test's folder: the run must end by itself
with no finding. FUZZ_SECONDS runs it longer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TARGET = HERE / "fuzz_uploads.py"
SECONDS = int(os.environ.get("FUZZ_SECONDS", "5"))

pytest.importorskip("atheris", reason="atheris is not installed (pip install -e '.[dev]')")


def test_the_seed_corpus_is_in_the_repo() -> None:
    seeds = sorted(CORPUS.iterdir())
    assert len(seeds) >= 20
    assert {seed.read_bytes()[0] % 3 for seed in seeds} == {0, 1, 2}  # every target seeded


def test_fuzzing_image_decoding_and_body_parsing_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    done = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            str(corpus),
            f"-max_total_time={SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=3072",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        cwd=tmp_path,
    )
    findings = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))
    ]
    assert done.returncode == 0 and not findings, done.stderr[-5000:]
    assert "Done" in done.stderr and "stat::number_of_executed_units" in done.stderr
