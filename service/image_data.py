"""Whether an image file holds enough data for the size its header claims.

A header is a few bytes and can claim any size; when the pixel data ends early,
some decoders fill the rest (libjpeg when a marker comes early, zlib-compressed
PNG data whose stream ends before the last row) and a file of a few hundred bytes
becomes tens of megapixels to decode and search. Each format's coding has a least
number of bits per pixel (or block) that no encoder can go under, so a file below
it must end early: it is refused as corrupt before any pixel is decoded. Legitimate
files are never refused (the bounds are those of the format, not of typical files);
what is cheap to encode and expensive to decode for real (a large flat PNG) is
left to admission, which counts decoding cost by megapixels.
"""

from __future__ import annotations

import struct

from service.errors import CorruptImageError

# Deflate codes at most 258 bytes in 2 bits (a length code and a distance code of 1 bit
# each): no stream inflates more than 1032 times. A margin above it.
DEFLATE_MAX_RATIO = 1100
# Huffman-coded JPEG: a sequential scan (SOF0, SOF1) codes every 8x8 block of every component
# with a DC difference and at least an end-of-block, each at least 1 bit; a progressive or
# hierarchical one at least the DC difference of each block of some component. Arithmetic
# coding (SOF9..SOF15) has no such bound and is not checked.
SEQUENTIAL_SOF = {0xC0, 0xC1}
HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def check_data_suffices(data: bytes, fmt: str, width: int, height: int) -> None:
    """``CorruptImageError`` if ``data`` (a ``fmt`` file as Pillow names the format) is too
    short for ``width`` x ``height`` pixels under its format's coding."""
    try:
        if fmt in ("JPEG", "MPO"):
            least = _jpeg_least_bytes(data)
        elif fmt == "PNG":
            least = _png_least_bytes(data, width, height)
        else:
            return
    except (IndexError, struct.error):  # a structure cut short: the decoder will say what
        return
    if least is not None and least[0] > least[1]:
        need, have = least
        raise CorruptImageError(
            f"the {fmt} image's data ends early: its header claims {width} x {height} pixels, "
            f"which need at least {need} bytes of pixel data, but the file holds {have}"
        )


def _jpeg_least_bytes(data: bytes) -> tuple[int, int] | None:
    """(least scan bytes for the frame, scan bytes present), or None if not checked."""
    at = 2  # after SOI
    frame: tuple[int, int, int, list[tuple[int, int]]] | None = None
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None  # not a marker where one must be: the decoder will say
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # TEM, RSTn: no length
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        segment = data[at + 4 : at + 2 + length]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in HUFFMAN_SOF or len(segment) < 6:
                return None
            lines, samples, count = struct.unpack_from(">HHB", segment, 1)
            factors = [
                (segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15)
                for i in range(count)
                if 8 + 3 * i < len(segment)
            ]
            if not factors or lines == 0:
                return None
            frame = (marker, samples, lines, factors)
        if marker == 0xDA:  # start of the first scan: what follows is (mostly) scan data
            if frame is None:
                return None
            present = len(data) - (at + 2 + length)
            sof, samples, lines, factors = frame
            h_max = max(h for h, _ in factors) or 1
            v_max = max(v for _, v in factors) or 1
            blocks = [
                _ceil(_ceil(samples * h, h_max), 8) * _ceil(_ceil(lines * v, v_max), 8)
                for h, v in factors
            ]
            least_bits = 2 * sum(blocks) if sof in SEQUENTIAL_SOF else min(blocks)
            return _ceil(least_bits, 8), present
        at += 2 + length
    return None


def _png_least_bytes(data: bytes, width: int, height: int) -> tuple[int, int] | None:
    """(least compressed bytes for the pixels, IDAT bytes present), or None if not checked."""
    at = 8  # after the signature
    bits = None
    present = 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"IHDR" and length >= 10:
            depth, colour = data[at + 16], data[at + 17]
            channels = PNG_CHANNELS.get(colour)
            if channels is None:
                return None
            bits = depth * channels
        elif kind == b"IDAT":
            present += length
        elif kind == b"IEND":
            break
        at += 12 + length
    if bits is None:
        return None
    raw = height * _ceil(width * bits, 8)  # filter bytes left out: a lower bound
    return _ceil(raw, DEFLATE_MAX_RATIO), present


def _ceil(a: int, b: int) -> int:
    return -(-a // b)
