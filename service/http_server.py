"""The HTTP server around the app: uvicorn, with bounds on slow and idle clients.

uvicorn closes a connection that stays idle DAN_KEEP_ALIVE_S after an answer and
answers 503 beyond DAN_MAX_CONNECTIONS open connections (``limit_concurrency``),
but it waits for request headers for ever: a connection that never completes its
headers (opened and left idle, or fed a byte at a time) would be held without end.
``GuardedH11Protocol`` (uvicorn's h11 protocol) closes a connection whose
request headers are not complete DAN_HEADER_TIMEOUT_S after it began waiting for
them (the connection opened, or its previous answer went out), however the bytes
trickle in. The body has its own bound in the app (DAN_BODY_TIMEOUT_MS, 408), and an
answer sent before the body was read closes the connection (``CloseUnreadBodies``).
Headers are limited to h11's 16 KiB.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.config import Settings
from service.stream_protocol import GracefulWebSocketProtocol


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose headers do not come in time."""

    header_timeout_s: float = 10.0  # set per server by ``protocol_for``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's headers are in
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._wait_for_headers()  # the next request's

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        self._stop_waiting()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_late)

    def _stop_waiting(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class CloseUnreadBodies:
    """ASGI middleware: an answer sent before the request's body was read to its end (a
    refusal at the door, 401, 408, 413, 415) carries ``Connection: close``, so the server
    closes the connection after it instead of reading (or waiting for) the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        read = "transfer-encoding" not in headers and headers.get("content-length", "0") == "0"

        async def tracked() -> Message:
            nonlocal read
            got = await receive()
            if got["type"] != "http.request" or not got.get("more_body", False):
                read = True
            return got

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not read:
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*kept, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, tracked, closing)


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class of one server, with its header timeout."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": settings.header_timeout_s},
    )


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration of ``python -m service``."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings),
        # GET /align/stream: closed by the app itself on shutdown (service.stream_protocol); a
        # message longer than twice the largest image closes it with 1009.
        ws=GracefulWebSocketProtocol,
        ws_max_size=2 * settings.max_image_bytes,
        ws_per_message_deflate=False,  # frames are compressed images: deflate only costs CPU
        log_level=settings.log_level,
        log_config=None,  # the root logger set up by the caller
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        server_header=False,
    )
