"""Helpers of the client and command-line tests: what they use of a running service, a port."""

from __future__ import annotations

import socket
from typing import Protocol

import httpx

API_KEY = "client-test-key-0123456789"  # of keyed_service; DAN_API_KEYS wants >= 16 characters


class Service(Protocol):
    """What the tests use of a running service (``service_support.serving`` yields it)."""

    url: str
    client: httpx.Client


def free_port() -> int:
    """A loopback port nothing listens on (for the unreachable-service tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
