"""Service fixtures: the main test server (``python -m service`` on the tiny model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import MAIN_SETTINGS, serving

from bench.serving import ServiceProcess


@pytest.fixture(scope="session")
def service(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``python -m service`` serving the tiny model on a loopback port."""
    with serving(
        tmp_path_factory.mktemp("main-service"), model_path=tiny_model, **MAIN_SETTINGS
    ) as running:
        yield running
