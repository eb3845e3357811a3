"""The one drawing convention of landmarks: regions, their contours and colours; drawing on images.

The 68 iBUG points are drawn as the contours of ``model.landmarks``' groups
(jaw, brows, nose bridge and base, eyes, lips; eyes and lips closed), each
region in its colour (``REGIONS``), with each face's box in ``BOX_COLOUR``.
The command line (``dan-align align --draw``, ``dan-align video --draw``)
draws with ``draw_faces``; the service's demo page reads the same table from
``service/static/landmark-style.json``, which is generated from this module:

    python -m dan_align.drawing          # rewrite service/static/landmark-style.json
    python -m dan_align.drawing --check  # exit 1 if it is out of date

A test checks that the file and this module agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from model import landmarks as ibug

STYLE_FILE = Path(__file__).resolve().parent.parent / "service" / "static" / "landmark-style.json"
_SUBPIXEL_BITS = 4  # cv2 drawing at 1/16 pixel


@dataclass(frozen=True)
class Region:
    """One contour: its landmark indices in drawing order, closed or not, and its colour."""

    name: str
    points: tuple[int, ...]
    closed: bool
    colour: str  # "#rrggbb"


REGIONS: tuple[Region, ...] = (
    Region("jaw", ibug.JAW, False, "#f2c94c"),
    Region("right_brow", ibug.RIGHT_BROW, False, "#f2994a"),
    Region("left_brow", ibug.LEFT_BROW, False, "#f2994a"),
    Region("nose_bridge", ibug.NOSE_BRIDGE, False, "#6fcf97"),
    Region("nose_base", ibug.NOSE_BASE, False, "#27ae60"),
    Region("right_eye", ibug.RIGHT_EYE, True, "#56ccf2"),
    Region("left_eye", ibug.LEFT_EYE, True, "#56ccf2"),
    Region("outer_lip", ibug.OUTER_LIP, True, "#eb5757"),
    Region("inner_lip", ibug.INNER_LIP, True, "#ff8fb1"),
)
BOX_COLOUR = "#b794f6"


def style_document() -> dict[str, Any]:
    """The drawing table as the demo page reads it (``landmark-style.json``)."""
    return {
        "generated_by": "python -m dan_align.drawing (from dan_align/drawing.py); do not edit",
        "scheme": ibug.SCHEME,
        "num_landmarks": ibug.NUM_LANDMARKS,
        "box_colour": BOX_COLOUR,
        "regions": [
            {"name": r.name, "points": list(r.points), "closed": r.closed, "colour": r.colour}
            for r in REGIONS
        ],
    }


def style_text() -> str:
    """``style_document()`` as the exact text of ``landmark-style.json`` (a region a line)."""
    document = style_document()
    regions = document.pop("regions")
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in document.items()]
    rows = ",\n".join(f"    {json.dumps(region)}" for region in regions)
    return "{\n" + "\n".join(lines) + '\n  "regions": [\n' + rows + "\n  ]\n}\n"


def bgr(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as OpenCV's (blue, green, red)."""
    value = colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return blue, green, red


def draw_faces(
    image: npt.NDArray[np.uint8],
    faces: Iterable[tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    labels: bool = True,
) -> npt.NDArray[np.uint8]:
    """A BGR copy of ``image`` (BGR or grayscale) with each face's box and landmarks drawn.

    ``faces``: ``(box [x_min, y_min, x_max, y_max], landmarks (68, 2))`` pairs in image pixels
    (the centre of the top-left pixel at (0, 0), as the service answers and as OpenCV draws).
    ``labels``: number the faces from 1 above their boxes. Sizes follow each face's box.
    """
    canvas: npt.NDArray[np.uint8] = np.array(
        image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8
    )
    scale = float(1 << _SUBPIXEL_BITS)
    for number, (box, points) in enumerate(faces, start=1):
        box_array = np.asarray(box, dtype=np.float64).reshape(4)
        pts = np.asarray(points, dtype=np.float64).reshape(ibug.NUM_LANDMARKS, 2)
        side = max(box_array[2] - box_array[0], box_array[3] - box_array[1], 1.0)
        width = max(1, round(side / 150.0))
        radius = max(1.5, side / 110.0)
        corner = np.round(box_array * scale).astype(np.int32)
        cv2.rectangle(
            canvas,
            (int(corner[0]), int(corner[1])),
            (int(corner[2]), int(corner[3])),
            bgr(BOX_COLOUR),
            width,
            cv2.LINE_AA,
            _SUBPIXEL_BITS,
        )
        if labels:
            font = max(0.4, side / 250.0)
            origin = (round(box_array[0]), max(round(box_array[1]) - 2 * width, 10))
            cv2.putText(
                canvas,
                str(number),
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                font,
                bgr(BOX_COLOUR),
                width,
                cv2.LINE_AA,
            )
        fixed = np.round(pts * scale).astype(np.int32)
        for region in REGIONS:
            cv2.polylines(
                canvas,
                [fixed[list(region.points)]],
                region.closed,
                bgr(region.colour),
                width,
                cv2.LINE_AA,
                _SUBPIXEL_BITS,
            )
        for region in REGIONS:
            for index in region.points:
                cv2.circle(
                    canvas,
                    (int(fixed[index, 0]), int(fixed[index, 1])),
                    round(radius * scale),
                    bgr(region.colour),
                    -1,
                    cv2.LINE_AA,
                    _SUBPIXEL_BITS,
                )
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dan_align.drawing",
        description=f"Write the demo page's drawing table {STYLE_FILE.name} from this module.",
    )
    parser.add_argument("--check", action="store_true", help="only check: exit 1 if out of date")
    parser.add_argument("--path", type=Path, default=STYLE_FILE, help="default: %(default)s")
    args = parser.parse_args(argv)
    current = args.path.read_text() if args.path.is_file() else None
    if current == style_text():
        return 0
    if args.check:
        sys.stderr.write(f"{args.path} is out of date: run python -m dan_align.drawing\n")
        return 1
    args.path.write_text(style_text())
    sys.stderr.write(f"wrote {args.path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
