"""The API documentation works offline (issue 13, class 7), on a real server.

``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) of ``python -m service`` on a loopback port name
only URLs of the service itself, every one of them is served (the bundles ship with the
``fastapi-offline`` package), no web font is loaded, and the pages' Content-Security-Policy
lets the browser reach no other host.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

pytestmark = pytest.mark.process
URL_ATTRIBUTES = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


def page_urls(html: str) -> list[str]:
    """URLs a page's HTML (and its inline start-up script) names: src, href, url."""
    return URL_ATTRIBUTES.findall(html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_service(service: Any, page: str) -> None:
    answer = service.client.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy  # no other origin allowed
    html = answer.text
    urls = page_urls(html)
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} names another host: {url}"
        target = urljoin(f"{service.url}{page}", url)
        fetched = service.client.get(target)
        assert fetched.status_code == 200, target
        assert len(fetched.content) > 0
    assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html
    assert "validator.swagger.io" not in html


def test_the_schema_the_pages_load_is_the_services(service: Any) -> None:
    html = service.client.get("/docs").text
    (schema_url,) = re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
    schema = service.client.get(urljoin(f"{service.url}/docs", schema_url)).json()
    assert "/align" in schema["paths"]
    redoc = service.client.get("/redoc").text
    assert 'spec-url="openapi.json"' in redoc


def test_the_bundles_are_javascript_and_css(service: Any) -> None:
    for path, kind in (
        ("/docs/assets/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/assets/redoc.standalone.js", "text/javascript"),
        ("/docs/assets/swagger-ui.css", "text/css"),
        ("/docs/assets/favicon.png", "image/png"),
    ):
        answer = service.client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith(kind)
    redoc = service.client.get("/docs/assets/redoc.standalone.js").content
    assert b"cdn.redoc.ly" not in redoc  # its one URL elsewhere, the footer logo, replaced
    assert service.client.get("/docs/assets/../../service/config.py").status_code == 404
    assert service.client.get("/docs/assets/").status_code == 404  # no listing


CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (scripts/test.sh installs it when run as root)",
)
@pytest.mark.parametrize(("page", "shown"), [("/docs", ".opblock-summary-path"), ("/redoc", "h1")])
def test_the_docs_pages_render_in_a_browser_without_another_host(
    service: Any, tmp_path: Path, page: str, shown: str
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            tab = context.new_page()
            requests: list[str] = []
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(service.url + page)
            tab.wait_for_selector(shown, timeout=WAIT_MS)
            text = tab.inner_text("body")
        finally:
            context.close()
    own = urlsplit(service.url).netloc
    foreign = [u for u in requests if urlsplit(u).scheme not in ("blob", "data")]
    foreign = [u for u in foreign if urlsplit(u).netloc != own]
    assert foreign == [], foreign
    assert "/align" in text
