"""The demo page: ``GET /`` and its files under ``/demo/``, from ``service/static/``.

Plain HTML, CSS and JavaScript shipped in the package (no build step): pick,
drop or film a face and see each face's box and 68 landmarks drawn over it,
with the answer's timings, confidence and pose when it has them, and the raw
JSON. The page calls only this service (``POST /align``, relative URLs, so it
also works behind a path prefix); its Content-Security-Policy lets it reach
nothing else, so it works on air-gapped machines. The drawing table
(``landmark-style.json``) is generated from ``dan_align.drawing``, the command
line's drawing, so both draw alike. ``DAN_DEMO_PAGE=false`` leaves the routes
out (``GET /`` is then 404 ``not_found``, like any unknown path).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

STATIC = Path(__file__).resolve().parent / "static"
INDEX = "/"
# Route -> (file in STATIC, media type). Only these files are served: no directory listing.
ASSETS: dict[str, tuple[str, str]] = {
    "/demo/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo/demo.css": ("demo.css", "text/css; charset=utf-8"),
    "/demo/landmark-style.json": ("landmark-style.json", "application/json"),
}
ROUTES = frozenset({INDEX, *ASSETS})
# Same origin only: scripts, styles and requests; photos and webcam frames as blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@functools.cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file_response(name: str, media_type: str) -> Response:
    return Response(_read(name), media_type=media_type, headers=HEADERS)


def add_routes(app: FastAPI) -> None:
    """``GET /`` (the page) and ``GET /demo/<file>`` for its script, style and drawing table."""

    pages = {INDEX: ("index.html", "text/html; charset=utf-8"), **ASSETS}
    for route, (name, media_type) in pages.items():
        app.add_api_route(
            route, _asset(name, media_type), methods=["GET", "HEAD"], include_in_schema=False
        )


def _asset(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    # A closure, not default arguments: FastAPI would read those from the query string.
    async def asset() -> Response:
        return _file_response(name, media_type)

    return asset
