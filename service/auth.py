"""Optional API keys: one set for ``/align`` (and every ``/align/...`` route), one for ``/metrics``.

A client sends its key as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
Keys come from the settings (DAN_API_KEYS, DAN_API_KEYS_FILE, DAN_METRICS_API_KEYS,
DAN_METRICS_API_KEYS_FILE); a route whose set is empty is open. Health, the demo
page and the documentation are always open (probes need no key). A request
without a valid key is answered 401 ``unauthorized`` with ``WWW-Authenticate``
before its body is read. A presented key is compared with every configured key in
constant time (SHA-256 digests, ``hmac.compare_digest``, no early exit), and no key
is ever logged or put into an answer. ``document_security`` writes the same rules
into the OpenAPI schema (the two ways to send a key, on the guarded operations), so
generated clients and the Swagger page's Authorize button know them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError, UnauthorizedError

REALM = "dan-align"
CHALLENGE = f'Bearer realm="{REALM}"'
KEY_HEADER = "x-api-key"


class ApiKeys:
    """A set of keys, checked in constant time; empty: nothing is required."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in sorted(set(keys))]

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str | None) -> bool:
        if presented is None:
            return False
        given = _digest(presented)
        found = False
        for digest in self._digests:  # all of them, whatever matched
            found |= hmac.compare_digest(given, digest)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def presented_key(headers: Headers) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get(KEY_HEADER, "").strip()
    return key or None


@dataclass(frozen=True)
class Guard:
    """The keys a path (``prefix`` itself, or anything under ``prefix/``) requires."""

    prefix: str
    keys: ApiKeys
    what: str  # named in the answer, e.g. "POST /align"

    def covers(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the API key as 'Authorization: Bearer KEY'",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "the API key as 'X-API-Key: KEY'",
    },
}


def document_security(schema: dict[str, Any], guards: Iterable[Guard]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document, changed in place) with the keys the guards require:
    the two ways to send one as security schemes, and on every operation of a guarded path
    with keys, either of them as its security requirement. Open paths stay open."""
    active = [g for g in guards if g.keys.required]
    if not active:
        return schema
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, operations in schema.get("paths", {}).items():
        if any(g.covers(path) for g in active):
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    return schema


class ErrorAnswer(Protocol):
    """The app's one error answer (``service.app.ErrorAnswers.response``)."""

    def __call__(
        self,
        method: str,
        path: str,
        error: ServiceError,
        *,
        logged: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Response: ...


class ApiKeyMiddleware:
    """Answers 401 (through ``answer``, the app's one error answer) to a request on a guarded
    path without a valid key; everything else passes untouched."""

    def __init__(self, app: ASGIApp, guards: Iterable[Guard], answer: ErrorAnswer) -> None:
        self.app = app
        self.guards = [g for g in guards if g.keys.required]
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.guards:
            path = scope.get("path", "")
            guard = next((g for g in self.guards if g.covers(path)), None)
            if guard is not None:
                presented = presented_key(Headers(scope=scope))
                if not guard.keys.accepts(presented):
                    error = UnauthorizedError(
                        f"{guard.what} needs an API key: send 'Authorization: Bearer KEY' or "
                        f"'X-API-Key: KEY'"
                        if presented is None
                        else f"the API key sent is not one that {guard.what} accepts"
                    )
                    response = self.answer(
                        scope.get("method", ""),
                        path,
                        error,
                        headers={"WWW-Authenticate": CHALLENGE},
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
