"""Hostile clients on a raw TCP socket: requests cut short, bodies that trickle, half-sent
headers, and reading the server's metrics to see what it made of them.

A test waits for what it can observe (a counter in ``/metrics``, a closed socket), never for a
guessed time: ``until`` polls a condition with a bound.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

WAIT_S = 30.0  # the longest a test waits for something it expects to happen
POLL_S = 0.01


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(
    method: str, path: str, headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def multipart(image: bytes, boxes: str | None = None, boundary: str = "dan-boundary") -> bytes:
    parts = [
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="image"; filename="f.png"\r\n'
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + image
        + b"\r\n"
    ]
    if boxes is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="boxes"\r\n\r\n{boxes}\r\n'.encode()
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


MULTIPART_TYPE = "multipart/form-data; boundary=dan-boundary"


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or WAIT_S)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer on a connection left open: (status, headers, body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the answer's body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed (or reset) the connection; waits up to the socket's timeout."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def metrics(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    return metrics(client).get((name, tuple(sorted(labels.items()))), 0.0)


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"never saw {what}"
        time.sleep(POLL_S)


def until_metric(client: httpx.Client, name: str, value: float, **labels: str) -> None:
    until(lambda: metric(client, name, **labels) == value, f"{name}{labels} == {value}")
