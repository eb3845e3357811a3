"""Helpers of the stream tests: a WebSocket to a real server's ``/align/stream``, its answers
and its close, frames as encoded images. Every wait is bounded and for something observable
(an answer, the close), never a guessed time."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image
from raw_http import WAIT_S
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bench.serving import ServiceProcess


def open_stream(service: ServiceProcess, headers: dict[str, str] | None = None) -> ClientConnection:
    """A WebSocket to the service's stream endpoint (no compression, as the client sends)."""
    return connect(
        f"ws://127.0.0.1:{service.port}/align/stream",
        additional_headers=headers,
        compression=None,
        open_timeout=WAIT_S,
        close_timeout=WAIT_S,
        max_size=None,
        legacy=True,  # the connection itself, not a context manager
    )


def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next text message, parsed."""
    message = ws.recv(timeout=WAIT_S)
    assert isinstance(message, str), f"expected a text message, got {len(message)} bytes"
    parsed: dict[str, Any] = json.loads(message)
    return parsed


def send_options(ws: ClientConnection, **options: object) -> None:
    ws.send(json.dumps(options))


def close_of(ws: ClientConnection) -> tuple[int, str]:
    """(code, reason) of the close the server sends next; fails if a message comes first."""
    try:
        message = ws.recv(timeout=WAIT_S)
    except ConnectionClosed as e:
        assert e.rcvd is not None, "the connection was lost without a close frame"
        return e.rcvd.code, e.rcvd.reason
    raise AssertionError(f"expected the stream to close, got a message: {message!r:.300}")


def encoded(pixels: np.ndarray, fmt: str = "JPEG") -> bytes:
    """An image (H, W) or (H, W, 3) uint8 as a file of ``fmt``."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def canvas_with(face: np.ndarray, x: int, y: int, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """The image ``face`` pasted at (x, y) on a grey canvas (cut where it passes the edge)."""
    out = np.full((*size, *face.shape[2:]), 128, dtype=np.uint8)
    h, w = face.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, size[1]), min(y + h, size[0])
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = face[y0 - y : y1 - y, x0 - x : x1 - x]
    return out
