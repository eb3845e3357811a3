"""The demo page in a real browser: Debian's headless ``chromium`` driven by Playwright.

A real ``python -m service`` (the released model, CenterFace) serves the page on a loopback
port; the browser loads it, a real 300-W photo is uploaded through the file input, and the
test reads the drawing back from the page's SVG overlay (one ``circle.landmark`` per point,
with its index and the answer's coordinates as data attributes): every point must be drawn
where the JSON says, on screen, in its region's colour from the shared drawing table, the
contours joined as the iBUG groups are. Every request the page makes is recorded: none may
go to another host. Errors must be shown as the service words them; the optional per-face
fields (confidence, status, pose) shown when present; the webcam mode (Chromium's fake
camera) must send frames to ``/align``.

Playwright drives the system browser (``executable_path``), so ``playwright install`` (a
download) is never needed; without ``chromium`` the tests skip saying so (scripts/test.sh
installs it with apt when run as root). ``DEMO_SCREENSHOT=docs/demo.png`` makes the photo
test write the README's screenshot there.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from service_support import serving

from dan_align import drawing

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (scripts/test.sh installs it when run as "
        "root: apt-get install chromium)",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)

REPO = Path(__file__).resolve().parents[2]
RELEASED_MODEL = REPO / "model" / "dan-300w.onnx"
SCREENSHOT_VARIABLE = "DEMO_SCREENSHOT"  # not DAN_*: the service refuses unknown DAN_* variables
SCREENSHOT_MAX_BYTES = 300_000
README_PHOTO = "afw/111076519_1.jpg"  # two faces, under the 300-W folder
# No network beyond the page's own server, no first-run or background traffic; a fresh profile
# (Playwright's persistent context in a temporary folder). The fake camera serves webcam mode.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
VIEWPORT = {"width": 1100, "height": 860}
WAIT_MS = 60_000
API_KEY = "demo-page-test-key-0123456789"
SCREEN_TOLERANCE_PX = 0.05
TOLERANCE_PX = 0.01
PAGE_PATHS = {"/", "/align", "/demo/demo.js", "/demo/demo.css", "/demo/landmark-style.json"}

READ_DRAWING = """() => {
  const photo = document.getElementById("photo");
  const svg = document.getElementById("overlay");
  const shown = photo.getBoundingClientRect();
  const centre = (e) => { const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; };
  return {
    shown: { left: shown.left, top: shown.top, width: shown.width, height: shown.height },
    natural: [photo.naturalWidth, photo.naturalHeight],
    viewBox: svg.getAttribute("viewBox"),
    circles: [...svg.querySelectorAll("circle.landmark")].map((c) => ({
      face: Number(c.dataset.face), index: Number(c.dataset.index), region: c.dataset.region,
      x: Number(c.dataset.x), y: Number(c.dataset.y), fill: c.getAttribute("fill"), screen: centre(c),
    })),
    contours: [...svg.querySelectorAll(".contour")].map((e) => ({
      tag: e.tagName, face: Number(e.dataset.face), region: e.dataset.region,
      stroke: e.getAttribute("stroke"), points: [...e.points].map((p) => [p.x, p.y]),
    })),
    boxes: [...svg.querySelectorAll("rect.box")].map((b) => ({
      face: Number(b.dataset.face), stroke: b.getAttribute("stroke"), screen: centre(b),
    })),
    faces: document.querySelectorAll("#faces thead th[data-face]").length,
    fields: [...document.querySelectorAll("#faces tbody tr")].map((tr) => tr.dataset.field),
    raw: document.getElementById("raw").textContent,
  };
}"""


@dataclass
class Tab:
    """A page of the browser, with every request it made and every script error it hit."""

    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self) -> None:
        self.page.goto(self.url + "/")
        self.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)

    def upload(self, file: Any) -> Any:
        """Pick ``file`` (a path or Playwright's file payload); the /align response."""
        with self.page.expect_response(
            lambda r: urlsplit(r.url).path == "/align", timeout=WAIT_MS
        ) as answered:
            self.page.set_input_files("#file", file)
        return answered.value

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the page's own server (blob: and data: are local)."""
        own = urlsplit(self.url).netloc
        return [
            u
            for u in self.requests
            if urlsplit(u).scheme not in ("blob", "data") and urlsplit(u).netloc != own
        ]


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serving(
        tmp_path_factory.mktemp("demo-service"),
        model_path=RELEASED_MODEL,
        max_batch_size=4,
        warmup_runs=1,
        detector="centerface",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A service whose /align wants the key ``API_KEY`` (the page itself stays open)."""
    with serving(
        tmp_path_factory.mktemp("keyed-demo-service"),
        model_path=RELEASED_MODEL,
        max_batch_size=2,
        warmup_runs=1,
        detector="none",
        api_keys=API_KEY,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium in a fresh profile (``--user-data-dir`` in a new temporary folder)."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def tab(browser: Any, demo_service: Any) -> Iterator[Tab]:
    page = browser.new_page()
    tab = Tab(page, demo_service.url)
    page.on("request", lambda request: tab.requests.append(request.url))
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    try:
        yield tab
    finally:
        page.close()
    assert tab.errors == [], f"script errors on the page: {tab.errors}"
    assert tab.foreign_requests() == [], "the page made requests to another host"


@pytest.fixture(scope="module")
def photo(data_root: Path) -> Path:
    path = data_root / "lfpw" / "testset" / "image_0001.jpg"
    if not path.is_file():
        pytest.skip(f"expected the 300-W photo {path}")
    return path


def test_a_photo_gets_its_landmarks_drawn_where_the_answer_says(
    tab: Tab, demo_service: Any, photo: Path, tmp_path: Path
) -> None:
    tab.open()
    response = tab.upload(str(photo))
    assert response.status == 200
    answer = response.json()
    tab.page.wait_for_selector("#status[data-state=done]", timeout=WAIT_MS)
    drawn = tab.page.evaluate(READ_DRAWING)
    faces = answer["faces"]
    assert len(faces) == 1, "the detector finds the photo's face"
    # The page sent the file as it is: the same answer as a direct request.
    direct = demo_service.client.post(
        "/align", files={"image": (photo.name, photo.read_bytes())}
    ).json()
    np.testing.assert_allclose(
        faces[0]["landmarks"], direct["faces"][0]["landmarks"], atol=TOLERANCE_PX
    )

    width, height = answer["image"]["width"], answer["image"]["height"]
    assert drawn["natural"] == [width, height]
    assert drawn["viewBox"] == f"0 0 {width} {height}"
    shown = drawn["shown"]
    scale_x, scale_y = shown["width"] / width, shown["height"] / height
    colour_of = {i: r.colour for r in drawing.REGIONS for i in r.points}
    region_of = {i: r.name for r in drawing.REGIONS for i in r.points}

    circles = drawn["circles"]
    assert len(circles) == 68 * len(faces)
    assert sorted((c["face"], c["index"]) for c in circles) == [
        (f, i) for f in range(len(faces)) for i in range(68)
    ]
    for circle in circles:
        x, y = faces[circle["face"]]["landmarks"][circle["index"]]
        assert (circle["x"], circle["y"]) == (x, y), "the drawn point is the answer's"
        # On screen: the pixel centre (x + 0.5, y + 0.5) of the photo as displayed.
        expected = (shown["left"] + (x + 0.5) * scale_x, shown["top"] + (y + 0.5) * scale_y)
        assert circle["screen"] == pytest.approx(expected, abs=SCREEN_TOLERANCE_PX)
        assert circle["fill"] == colour_of[circle["index"]]
        assert circle["region"] == region_of[circle["index"]]

    contours = drawn["contours"]
    assert len(contours) == len(drawing.REGIONS) * len(faces)
    for contour, region in zip(contours, drawing.REGIONS * len(faces), strict=True):
        assert contour["region"] == region.name and contour["stroke"] == region.colour
        assert contour["tag"] == ("polygon" if region.closed else "polyline")
        points = np.asarray(faces[contour["face"]]["landmarks"])[list(region.points)] + 0.5
        np.testing.assert_allclose(contour["points"], points, atol=1e-3)

    (box,) = drawn["boxes"]
    x0, y0, x1, y1 = faces[0]["box"]
    assert box["stroke"] == drawing.BOX_COLOUR
    assert box["screen"] == pytest.approx(
        (
            shown["left"] + ((x0 + x1) / 2 + 0.5) * scale_x,
            shown["top"] + ((y0 + y1) / 2 + 0.5) * scale_y,
        ),
        abs=0.5,
    )
    assert drawn["faces"] == len(faces)
    assert json.loads(drawn["raw"]) == answer
    assert tab.page.inner_text("#status").startswith(f"{photo.name}: 1 face in ")
    assert {urlsplit(u).path for u in tab.requests if urlsplit(u).scheme == "http"} == PAGE_PATHS
    tab.page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    if os.environ.get(SCREENSHOT_VARIABLE):
        group = photo.parents[2] / README_PHOTO
        write_readme_screenshot(tab, group, Path(os.environ[SCREENSHOT_VARIABLE]))


def write_readme_screenshot(tab: Tab, photo: Path, path: Path) -> None:
    """The top of the page (input, photo, faces, timings) for ``photo``, as a small PNG."""
    from PIL import Image

    tab.upload(str(photo))
    tab.page.wait_for_selector("#status[data-state=done]", timeout=WAIT_MS)
    bottom = tab.page.evaluate(
        "() => document.querySelector('.workspace').getBoundingClientRect().bottom"
    )
    png = tab.page.screenshot(
        clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom + 16}
    )
    image = Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() >= SCREENSHOT_MAX_BYTES:  # a palette that keeps the drawing's colours
        buffer = io.BytesIO()
        image.quantize(256, method=Image.Quantize.FASTOCTREE).save(buffer, "PNG", optimize=True)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    ("payload", "boxes"),
    [
        ({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}, ""),
        (None, "[[1, 2, 3]]"),
    ],
    ids=["not_an_image", "bad_boxes"],
)
def test_errors_are_shown_as_the_service_words_them(
    tab: Tab, demo_service: Any, photo: Path, payload: Any, boxes: str
) -> None:
    tab.open()
    if boxes:
        tab.page.click("#options summary")
        tab.page.fill("#boxes", boxes)
    if payload is None:
        payload = {"name": photo.name, "mimeType": "image/jpeg", "buffer": photo.read_bytes()}
    response = tab.upload(payload)
    tab.page.wait_for_selector("#status[data-state=error]", timeout=WAIT_MS)
    direct = demo_service.client.post(
        "/align",
        files={"image": (payload["name"], payload["buffer"])},
        data={"boxes": boxes} if boxes else {},
    )
    assert response.status == direct.status_code >= 400
    expected = direct.json()
    assert tab.page.inner_text("#error-reason") == expected["error"]
    assert tab.page.inner_text("#error-detail") == expected["detail"]
    assert tab.page.inner_text("#error-status") == f"HTTP {direct.status_code}"
    assert json.loads(tab.page.inner_text("#raw")) == expected
    assert tab.page.is_hidden("#stage")


@pytest.mark.parametrize("present", [True, False], ids=["with", "without"])
def test_confidence_status_and_pose_are_shown_when_the_answer_has_them(
    tab: Tab, demo_service: Any, photo: Path, present: bool
) -> None:
    """The page gets the service's answer, with the optional fields added or taken away."""
    answer = demo_service.client.post(
        "/align", files={"image": (photo.name, photo.read_bytes())}
    ).json()
    for face in answer["faces"]:
        for key in ("confidence", "status", "pose"):
            face.pop(key, None)
        if present:
            face.update(
                confidence=0.875, status="ok", pose={"yaw": 12.5, "pitch": -3.25, "roll": 1.0}
            )
    tab.page.route(
        "**/align",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(answer)
        ),
    )
    tab.open()
    tab.upload(str(photo))
    tab.page.wait_for_selector("#status[data-state=done]", timeout=WAIT_MS)
    drawn = tab.page.evaluate(READ_DRAWING)
    assert len(drawn["circles"]) == 68
    optional = ["confidence", "status", "yaw", "pitch", "roll"]
    assert drawn["faces"] == 1
    if not present:
        assert not set(optional) & set(drawn["fields"])
        return
    assert [f for f in drawn["fields"] if f in optional] == optional
    cells = {
        name: tab.page.inner_text(f'#faces td[data-face="0"][data-field="{name}"]')
        for name in optional
    }
    assert cells == {
        "confidence": "0.875",
        "status": "ok",
        "yaw": "12.5",
        "pitch": "-3.3",
        "roll": "1.0",
    }


def test_the_webcam_sends_frames_to_align(tab: Tab, browser: Any) -> None:
    browser.grant_permissions(["camera"], origin=tab.url)
    tab.open()
    tab.page.click("#webcam")
    tab.page.wait_for_function(
        "() => Number(document.getElementById('status').dataset.frames || 0) >= 2",
        timeout=WAIT_MS,
    )
    assert tab.page.get_attribute("#webcam", "data-running") == "true"
    view_box = tab.page.get_attribute("#overlay", "viewBox")
    size = tab.page.evaluate(
        "() => [document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]"
    )
    assert view_box == f"0 0 {size[0]} {size[1]}"
    tab.page.click("#webcam")
    tab.page.wait_for_selector("#webcam[data-running=false]", timeout=WAIT_MS)
    frames = [u for u in tab.requests if urlsplit(u).path == "/align"]
    assert len(frames) >= 2


def test_the_api_key_is_sent_as_a_bearer_token(
    browser: Any, keyed_service: Any, photo: Path
) -> None:
    page = browser.new_page()
    tab = Tab(page, keyed_service.url)
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization")))
    try:
        tab.open()
        tab.upload(str(photo))
        page.wait_for_selector("#status[data-state=error]", timeout=WAIT_MS)
        assert page.inner_text("#error-reason") == "unauthorized"
        page.click("#options summary")
        page.fill("#api-key", API_KEY)
        assert tab.upload(str(photo)).status == 200
        page.wait_for_selector("#status[data-state=done]", timeout=WAIT_MS)
    finally:
        page.close()
    assert f"Bearer {API_KEY}" in sent
