"""The demo page's routes and files, in-process (the browser test is ``test_demo_browser``).

``GET /`` and ``/demo/*`` serve the shipped files with a same-origin-only
Content-Security-Policy; ``DAN_DEMO_PAGE=false`` takes them away; the files name
no other host; the drawing table is the command line's; the README shows the page.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from dan_align import drawing
from service import demo_page
from service.app import create_app
from service.config import Settings

REPO = Path(__file__).resolve().parents[2]
RELEASED_MODEL = REPO / "model" / "dan-300w.onnx"
SCREENSHOT = REPO / "docs" / "demo.png"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def get(path: str, *, demo: bool = True, method: str = "GET") -> httpx.Response:
    """``path`` from the app in-process (no lifespan: the page needs no model loaded)."""
    app = create_app(Settings(model_path=RELEASED_MODEL, demo_page=demo))

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as client:
            return await client.request(method, path)

    return asyncio.run(fetch())


def test_the_page_is_served_at_the_root() -> None:
    response = get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (demo_page.STATIC / "index.html").read_text()
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'"):
        assert directive in policy
    assert get("/", method="HEAD").status_code == 200


@pytest.mark.parametrize("route", sorted(demo_page.ASSETS))
def test_the_pages_files_are_served(route: str) -> None:
    name, media_type = demo_page.ASSETS[route]
    response = get(route)
    assert response.status_code == 200
    assert response.content == (demo_page.STATIC / name).read_bytes()
    assert response.headers["content-type"] == media_type


def test_only_the_pages_files_are_served() -> None:
    for path in ("/demo/", "/demo/index.html", "/demo/../config.py", "/demo/demo.js/x"):
        response = get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert (
        get("/demo/demo.js?name=../config.py").content
        == (demo_page.STATIC / "demo.js").read_bytes()
    )


def test_the_setting_turns_the_page_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in ("/", *demo_page.ASSETS):
        response = get(path, demo=False)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert Settings(model_path=RELEASED_MODEL).demo_page is True
    monkeypatch.setenv("DAN_DEMO_PAGE", "false")
    assert Settings(model_path=RELEASED_MODEL).demo_page is False


def test_the_page_is_not_in_the_api_schema() -> None:
    paths = get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/demo") for p in paths)


def test_the_pages_files_name_no_other_host() -> None:
    """Every URL in the shipped files is relative: nothing is fetched from another host."""
    for path in sorted(demo_page.STATIC.iterdir()):
        text = path.read_text()
        absolute = re.findall(r"\b(?:https?|wss?)://[^\s\"'`)<>]+", text)
        absolute = [u for u in absolute if u != SVG_NAMESPACE]
        assert absolute == [], f"{path.name} names other hosts: {absolute}"
        assert not re.search(r"""(?:src|href|action)\s*=\s*["']//""", text), path.name
        assert "@import" not in text and "cdn" not in text.lower(), path.name


def test_the_page_draws_with_the_command_lines_table() -> None:
    served = get("/demo/landmark-style.json").json()
    assert served == drawing.style_document()
    assert "landmark-style.json" in (demo_page.STATIC / "demo.js").read_text()


def test_the_readme_shows_the_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert "](docs/demo.png)" in readme
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size < 300_000
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
