"""dan_align.drawing: the one drawing table (the page's landmark-style.json agrees) and drawing."""

from __future__ import annotations

import json

import numpy as np

from dan_align import drawing
from model import landmarks as ibug


def test_regions_are_the_ibug_groups_each_point_once() -> None:
    groups = {
        "jaw": ibug.JAW,
        "right_brow": ibug.RIGHT_BROW,
        "left_brow": ibug.LEFT_BROW,
        "nose_bridge": ibug.NOSE_BRIDGE,
        "nose_base": ibug.NOSE_BASE,
        "right_eye": ibug.RIGHT_EYE,
        "left_eye": ibug.LEFT_EYE,
        "outer_lip": ibug.OUTER_LIP,
        "inner_lip": ibug.INNER_LIP,
    }
    assert {r.name: r.points for r in drawing.REGIONS} == groups
    points = [i for r in drawing.REGIONS for i in r.points]
    assert sorted(points) == list(range(ibug.NUM_LANDMARKS))
    closed = {r.name for r in drawing.REGIONS if r.closed}
    assert closed == {"right_eye", "left_eye", "outer_lip", "inner_lip"}


def test_the_demo_pages_table_is_generated_from_this_module() -> None:
    shipped = drawing.STYLE_FILE.read_text()
    assert shipped == drawing.style_text(), (
        f"{drawing.STYLE_FILE} is out of date: run python -m dan_align.drawing"
    )
    assert json.loads(shipped) == drawing.style_document()
    assert drawing.main(["--check"]) == 0


def test_the_check_fails_on_a_stale_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "landmark-style.json"
    stale.write_text("{}\n")
    assert drawing.main(["--check", "--path", str(stale)]) == 1
    assert drawing.main(["--path", str(stale)]) == 0
    assert stale.read_text() == drawing.style_text()


def test_points_are_drawn_in_their_regions_colours_where_they_are() -> None:
    image = np.full((640, 600), 128, np.uint8)
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(80, 520, 68), rng.uniform(80, 560, 68)])
    box = np.array([40.0, 40.0, 560.0, 600.0])  # lines 3 px wide: the middle one unblended
    drawn = drawing.draw_faces(image, [(box, points)], labels=False)
    assert drawn.shape == (640, 600, 3) and image.dtype == np.uint8
    assert (image == 128).all(), "the input is not drawn on"
    colour_of = {i: drawing.bgr(r.colour) for r in drawing.REGIONS for i in r.points}
    # The last region drawn wins where points overlap: check those drawn last at their centres.
    for index in (60, 63, 67):  # inner lip, drawn last
        x, y = np.round(points[index]).astype(int)
        assert tuple(drawn[y, x]) == colour_of[index]
    assert tuple(drawn[300, 40]) == drawing.bgr(drawing.BOX_COLOUR)  # the box's left edge


def test_colours_are_read_as_bgr() -> None:
    assert drawing.bgr("#102030") == (0x30, 0x20, 0x10)
