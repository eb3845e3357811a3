"""Pack 300-W compactly for a machine the data cannot reach (a lent GPU).

    python -m training.pack --data-root ../shared/data/300w --out .gpu/300w

Writes the official layout again (``afw/``, ``lfpw/trainset/``, ... with
``.jpg`` + ``.pts`` side by side, and ``boxes.csv``), so every loader reads the
packed folder as it reads the original: each face becomes a grayscale square of
``--size`` pixels around it (``--margin`` times the landmarks' extent on a side,
black outside the photo), its landmarks and detector box mapped by the same
scale and shift. At the defaults the 2566 faces of the obtainable 300-W take
about 30 MB. The crop the network sees is 112 pixels with the face spanning
about half of it: 208 pixels at a margin of 2.5 give the face 83 pixels, more than training uses.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from model.arrays import FloatArray, GrayImage
from model.geometry import bounding_box
from training.arguments import jpeg_quality, real_in, whole_in
from training.dataset import SPLITS, Sample, load_split, read_gray

log = logging.getLogger("training.pack")


def square_around(landmarks: FloatArray, margin: float) -> tuple[int, int, int]:
    """Integer (left, top, side) of a square ``margin`` x the landmarks' extent, centred on them."""
    x0, y0, x1, y1 = bounding_box(landmarks)
    side = max(1, math.ceil(margin * max(x1 - x0, y1 - y0)))
    left = round((x0 + x1) / 2 + 0.5 - side / 2)
    top = round((y0 + y1) / 2 + 0.5 - side / 2)
    return left, top, side


def crop_square(image: GrayImage, left: int, top: int, side: int, size: int) -> GrayImage:
    """The square [left, left + side) x [top, top + side) of ``image``, black outside, resized."""
    h, w = image.shape
    canvas = np.zeros((side, side), dtype=np.uint8)
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(w, left + side), min(h, top + side)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[sy0:sy1, sx0:sx1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(canvas, (size, size), interpolation=interpolation), np.uint8)


def map_points(points: FloatArray, left: int, top: int, side: int, size: int) -> FloatArray:
    """0-based pixel-centre points of the original -> of the resized square."""
    scale = size / side
    return np.asarray((points + 0.5 - np.array([left, top])) * scale - 0.5)


def write_pts(path: Path, landmarks: FloatArray) -> None:
    """An iBUG ``.pts`` file (1-based, as 300-W)."""
    lines = ["version: 1", f"n_points: {len(landmarks)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in landmarks]
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def pack_sample(
    sample: Sample, out: Path, size: int, margin: float, quality: int
) -> list[str] | None:
    """Write one packed face; returns its boxes.csv row (None when it has no detector box)."""
    left, top, side = square_around(sample.landmarks, margin)
    image = crop_square(read_gray(sample.image_path), left, top, side, size)
    name = Path(sample.name).with_suffix(".jpg").as_posix()
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {target}")
    write_pts(target.with_suffix(".pts"), map_points(sample.landmarks, left, top, side, size))
    if sample.detector_box is None:
        return None
    corners = map_points(sample.detector_box.reshape(2, 2), left, top, side, size).reshape(4)
    return [name, *(f"{v + 1:.3f}" for v in corners)]


def pack(
    data_root: Path,
    out: Path,
    splits: tuple[str, ...] = ("training", "common"),
    size: int = 208,
    margin: float = 2.5,
    quality: int = 92,
) -> int:
    """Pack every face of ``splits``; returns how many were written."""
    rows: list[list[str]] = []
    count = 0
    for split in splits:
        for sample in load_split(data_root, split).samples:
            row = pack_sample(sample, out, size, margin, quality)
            if row is not None:
                rows.append(row)
            count += 1
    with (out / "boxes.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)
    (out / "README.md").write_text(
        f"Packed by `python -m training.pack` from {data_root}: splits {', '.join(splits)}, "
        f"{count} faces, grayscale {size}x{size} JPEG (quality {quality}), "
        f"{margin} x the landmarks' extent on a side. Same licence as the source data.\n"
    )
    return count


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-root", type=Path, required=True, help="300-W root (official layout)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the packed layout to")
    p.add_argument(
        "--splits",
        nargs="+",
        choices=sorted(SPLITS),
        default=["training", "common"],
        help="splits to pack",
    )
    p.add_argument(
        "--size",
        type=whole_in(16, 4096),
        default=208,
        help="side of each packed square in pixels (16-4096)",
    )
    p.add_argument(
        "--margin",
        type=real_in(1.0, 10.0),
        default=2.5,
        help="side of the square as a multiple of the landmarks' larger extent (1-10)",
    )
    p.add_argument("--quality", type=jpeg_quality, default=92, help="JPEG quality (1-100)")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    count = pack(args.data_root, args.out, tuple(args.splits), args.size, args.margin, args.quality)
    log.info("packed %d faces into %s", count, args.out)


if __name__ == "__main__":
    main()
