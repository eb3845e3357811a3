"""/openapi.json states the API keys the service requires: schemes, and on which operations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_harness import settings_for
from pydantic import SecretStr

from service.app import create_app
from service.auth import SECURITY_SCHEMES

ALIGN_KEY = "align-key-0123456789abcdef0123"
METRICS_KEY = "metrics-key-0123456789abcdef01"
EITHER_KEY = [{"bearer": []}, {"apiKey": []}]


def served_schema(tiny_model: Path, **keys: str) -> dict[str, Any]:
    """GET /openapi.json of an app with these keys (no lifespan: the schema needs no engine)."""
    settings = settings_for(tiny_model, **{k: SecretStr(v) for k, v in keys.items()})
    app = create_app(settings, stop_service=lambda: None)

    async def get() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/openapi.json")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

    return asyncio.run(get())


def security_of(schema: dict[str, Any]) -> dict[str, Any]:
    """``{"METHOD /path": security requirement or None}`` for every operation."""
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def test_an_open_service_declares_no_security(tiny_model: Path) -> None:
    schema = served_schema(tiny_model)
    assert "securitySchemes" not in schema.get("components", {})
    assert set(security_of(schema).values()) == {None}


@pytest.mark.parametrize(
    ("keys", "guarded"),
    [
        ({"api_keys": ALIGN_KEY}, {"POST /align"}),
        ({"metrics_api_keys": METRICS_KEY}, {"GET /metrics"}),
        ({"api_keys": ALIGN_KEY, "metrics_api_keys": METRICS_KEY}, {"POST /align", "GET /metrics"}),
    ],
)
def test_keys_are_declared_on_exactly_the_guarded_operations(
    tiny_model: Path, keys: dict[str, str], guarded: set[str]
) -> None:
    schema = served_schema(tiny_model, **keys)
    assert schema["components"]["securitySchemes"] == SECURITY_SCHEMES
    security = security_of(schema)
    assert guarded <= set(security)
    for operation, requirement in security.items():
        assert requirement == (EITHER_KEY if operation in guarded else None), operation
    for operation in guarded:  # and the answer without a key is documented there
        method, path = operation.split(" ")
        assert "401" in schema["paths"][path][method.lower()]["responses"]
    assert ALIGN_KEY not in str(schema) and METRICS_KEY not in str(schema)
