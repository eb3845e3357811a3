"""Image files that lie: a header claiming far more pixels than the data that follows.

Each is made from a small real image by rewriting the size in its header (and the
checksum where the format has one), so the pixel data ends long before the claimed size.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG of ``width`` x ``height`` 8-bit gray pixels whose image data is ``idat``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr)
    if idat:
        chunks += png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IEND", b"")


def lying_png(width: int, height: int) -> bytes:
    """A complete zlib stream of 16 rows under a header of ``height`` rows."""
    rows = b"".join(
        b"\x00" + bytes(range(256)) * (width // 256) + bytes(width % 256) for _ in range(16)
    )
    return png_header_only(width, height, zlib.compress(rows, 9))


def lying_jpeg(width: int, height: int) -> bytes:
    """A small baseline JPEG whose frame header (SOF0) is rewritten to ``width`` x ``height``;
    its scan data ends (EOI) long before."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (120, 90, 60)), "JPEG"))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def lying_gif(width: int, height: int) -> bytes:
    """A small GIF whose screen and image descriptors claim ``width`` x ``height``."""
    data = bytearray(encode(_noise(64, 64).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen
    at = data.index(b"\x2c")  # image descriptor
    struct.pack_into("<HH", data, at + 5, width, height)
    return bytes(data)


def lying_bmp(width: int, height: int) -> bytes:
    data = bytearray(encode(_noise(64, 64), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def lying_tiff(width: int, height: int) -> bytes:
    """An uncompressed TIFF whose ImageWidth and ImageLength tags are rewritten."""
    data = bytearray(encode(_noise(64, 64), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        value = {256: width, 257: height}.get(tag)
        if value is not None:
            if kind == 3:  # SHORT
                struct.pack_into("<H", data, entry + 8, min(value, 65535))
            else:
                struct.pack_into("<I", data, entry + 8, value)
    return bytes(data)


def lying_webp(width: int, height: int) -> bytes:
    data = bytearray(encode(_noise(64, 64), "WEBP", quality=80))
    at = data.index(b"\x9d\x01\x2a")  # VP8 key frame start code
    struct.pack_into("<HH", data, at + 3, width & 0x3FFF, height & 0x3FFF)
    return bytes(data)


LIARS = {
    "JPEG": lying_jpeg,
    "PNG": lying_png,
    "GIF": lying_gif,
    "BMP": lying_bmp,
    "TIFF": lying_tiff,
    "WEBP": lying_webp,
}
