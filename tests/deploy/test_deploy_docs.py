"""docker/README.md documents every service setting and every compose variable, and the
limits of the proxy agree with the service's."""

from __future__ import annotations

import re

import pytest
from deploy_support import (
    COMPOSE_CPU_FILE,
    COMPOSE_FILE,
    DEPLOY_README,
    NGINX_CONF,
    compose_variables,
)

from service.config import Settings


def _documented_rows() -> dict[str, list[str]]:
    """First cell -> cells, for every table row of docker/README.md."""
    rows = {}
    for line in DEPLOY_README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_service_setting_is_documented(name: str) -> None:
    variable = f"`DAN_{name.upper()}`"
    assert variable in _documented_rows(), f"{variable} has no row in {DEPLOY_README}"


def test_no_unknown_setting_is_documented() -> None:
    known = {f"DAN_{name.upper()}" for name in Settings.model_fields}
    text = DEPLOY_README.read_text(encoding="utf-8")
    documented = set(re.findall(r"\bDAN_[A-Z0-9_]+\b", text))
    assert documented <= known, documented - known


@pytest.mark.parametrize(
    "variable",
    sorted(
        set(compose_variables(COMPOSE_FILE.read_text()))
        | set(compose_variables(COMPOSE_CPU_FILE.read_text()))
    ),
)
def test_every_compose_variable_is_documented(variable: str) -> None:
    rows = _documented_rows()
    assert any(f"`{variable}`" in first for first in rows), f"{variable} is not in a table row"


def test_documented_compose_defaults_are_the_files() -> None:
    rows = _documented_rows()
    for variable, default in compose_variables(COMPOSE_FILE.read_text()).items():
        if variable.startswith("DAN_"):
            continue  # documented with the service settings
        cells = rows[f"`{variable}`"]
        expected = "none: required" if default is None else f"`{default}`"
        assert cells[1] == expected, f"{variable}: documented {cells[1]}, file has {expected}"


def test_proxy_accepts_the_largest_body_the_service_accepts() -> None:
    """nginx must let through what the service would take (it answers 413 itself)."""
    from service.uploads import JSON, MULTIPART, body_limit

    match = re.search(r"client_max_body_size (\d+)m;", NGINX_CONF.read_text(encoding="utf-8"))
    assert match
    proxy_limit = int(match.group(1)) * 1024 * 1024
    largest = Settings.model_fields["max_image_bytes"].default
    assert proxy_limit >= max(body_limit(JSON, largest), body_limit(MULTIPART, largest))
