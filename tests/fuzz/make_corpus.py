"""Write the fuzz target's seed corpus (tests/fuzz/corpus): small images of every accepted
format and mode, lying and truncated ones, multipart and JSON bodies. Each file's first byte
picks the target (0 image, 1 multipart, 2 JSON; see fuzz_uploads.TARGETS).

    .venv/bin/python tests/fuzz/make_corpus.py
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "service"))
from lying_images import LIARS  # noqa: E402

CORPUS = HERE / "corpus"
IMAGE, MULTIPART, JSON = b"\x00", b"\x01", b"\x02"
BOUNDARY = b"dan-fuzz"


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def images() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    out = [encode(rgb, fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")]
    out += [
        encode(rgb.convert("L"), "PNG"),
        encode(rgb.convert("P"), "PNG"),
        encode(rgb.convert("RGBA"), "PNG"),
        encode(rgb.convert("CMYK"), "JPEG"),
        encode(rgb, "JPEG", progressive=True),
        encode(Image.fromarray(rng.integers(0, 65535, (8, 8), dtype=np.uint16)), "PNG"),
        encode(rgb.convert("1"), "TIFF", compression="group4"),
    ]
    exif = rgb.getexif()
    exif[0x0112] = 6  # rotated
    out.append(encode(rgb, "JPEG", exif=exif.tobytes()))
    out += [make(64, 48) for make in LIARS.values()]
    out.append(out[0][: len(out[0]) // 2])  # truncated
    return out


def multipart(image: bytes, boxes: str | None) -> bytes:
    body = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="image"; filename="f"\r\n\r\n'
    )
    body += image + b"\r\n"
    if boxes is not None:
        body += b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="boxes"\r\n\r\n'
        body += boxes.encode() + b"\r\n"
    return body + b"--" + BOUNDARY + b"--\r\n"


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    seeds = [IMAGE + data for data in images()]
    small = images()[1]
    seeds += [
        MULTIPART + multipart(small, "[[1, 2, 10, 11]]"),
        MULTIPART + multipart(small, "null"),
        MULTIPART + multipart(small, None),
        MULTIPART + multipart(small, "[[1, 2, 3]]")[:-8],  # cut short
        JSON
        + json.dumps(
            {"image": base64.b64encode(small).decode(), "boxes": [[1, 2, 10, 11]]}
        ).encode(),
        JSON
        + json.dumps(
            {"image": "data:image/png;base64," + base64.b64encode(small).decode()}
        ).encode(),
        JSON + b'{"image": "", "boxes": null}',
        JSON + b'{"image": "aGVsbG8=", "boxes": [[1, 2, 3, NaN]]}',
    ]
    for seed in seeds:
        (CORPUS / hashlib.sha1(seed).hexdigest()[:16]).write_bytes(seed)
    print(f"{len(seeds)} seeds in {CORPUS}")  # noqa: T201


if __name__ == "__main__":
    main()
