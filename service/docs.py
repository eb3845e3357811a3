"""The API documentation pages, offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

FastAPI's own pages load their scripts, styles and fonts from public CDNs and are
blank on hosts without internet access. These pages load everything from this
service: the Swagger UI and ReDoc bundles shipped by the ``fastapi-offline``
package (MIT; it ships Swagger UI, Apache-2.0, and ReDoc, MIT, unchanged), served
under ``/docs/assets/``, no web fonts, Swagger UI's online validator off, ReDoc's footer
logo (its one URL elsewhere) replaced by an empty image. Their
Content-Security-Policy lets the browser fetch nothing from anywhere else.
DAN_DOCS=false leaves these routes and ``/openapi.json`` out (404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
SWAGGER = "/docs"
REDOC = "/redoc"
ASSETS = "/docs/assets"
# The pages name their assets and the schema relative to themselves, so that they also work
# behind a proxy that serves the service under a path prefix.
ASSETS_RELATIVE = "docs/assets"
OPENAPI_RELATIVE = "openapi.json"
# Asset route -> (file in ASSETS_DIR, media type). Only these are served: no listing.
FILES: dict[str, tuple[str, str]] = {
    f"{ASSETS}/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    f"{ASSETS}/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    f"{ASSETS}/redoc.standalone.js": ("redoc.standalone.js", "text/javascript; charset=utf-8"),
    f"{ASSETS}/favicon.png": ("favicon.png", "image/png"),
}
ROUTES = frozenset({SWAGGER, REDOC, *FILES})
# What a bundle would fetch from elsewhere, and what it gets instead: ReDoc's footer logo.
EMPTY_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
REWRITES: dict[str, dict[bytes, bytes]] = {
    "redoc.standalone.js": {b"https://cdn.redoc.ly/redoc/logo-mini.svg": EMPTY_SVG},
}
# Everything from this origin; the pages' own inline start-up scripts and styles; ReDoc's
# workers from blobs; images as data URLs. Nothing from another host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}


def add_routes(app: FastAPI, openapi_url: str = OPENAPI_RELATIVE) -> None:
    """``/docs``, ``/redoc`` and their assets on ``app``, for the schema at ``openapi_url``."""
    title = app.title

    @app.get(SWAGGER, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_RELATIVE}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_RELATIVE}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_RELATIVE}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )
        return HTMLResponse(bytes(page.body), headers=HEADERS)

    @app.get(REDOC, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_RELATIVE}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_RELATIVE}/favicon.png",
            with_google_fonts=False,
        )
        return HTMLResponse(bytes(page.body), headers=HEADERS)

    for route, (name, media_type) in FILES.items():
        app.add_api_route(route, _file(name, media_type), methods=["GET"], include_in_schema=False)


def _file(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    headers = {"Cache-Control": "max-age=86400"}
    if name not in REWRITES:
        path = ASSETS_DIR / name

        async def serve() -> Response:
            return FileResponse(path, media_type=media_type, headers=headers)

        return serve
    content = (ASSETS_DIR / name).read_bytes()
    for old, new in REWRITES[name].items():
        content = content.replace(old, new)

    async def serve_rewritten() -> Response:
        return Response(content, media_type=media_type, headers=headers)

    return serve_rewritten
