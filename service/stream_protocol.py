"""uvicorn's WebSocket protocol, leaving it to the app to close its streams on shutdown.

On SIGTERM uvicorn asks every open connection to shut down, and its WebSocket protocol
closes a stream at once with 1012 (service restart): the frames the service has read and
not answered yet would be lost. ``GracefulWebSocketProtocol`` (the sans-I/O protocol of
the ``websockets`` package that uvicorn picks by default) puts a ``GoingAway`` into the
connection's ASGI scope (``scope["extensions"][GOING_AWAY]["signal"]``); an app that
takes it (``GoingAway.take``) is told instead (``GoingAway.event``) and closes the stream
itself once it has answered what it read, with 1001 (going away); uvicorn waits for the
connection to end, at most DAN_SHUTDOWN_TIMEOUT_S as for HTTP requests. A stream whose
app did not take it, or that is not open yet, is shut down as uvicorn does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

GOING_AWAY = "dan.going_away"


class GoingAway:
    """Set when the server shuts down, for an app that closes its stream itself."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.taken = False

    def take(self) -> asyncio.Event:
        """The app closes the stream itself on shutdown: the event it waits for."""
        self.taken = True
        return self.event


def going_away_of(scope: dict[str, Any] | Any) -> GoingAway | None:
    """The ``GoingAway`` of a WebSocket scope, or None (another server)."""
    extension = scope.get("extensions", {}).get(GOING_AWAY)
    signal = extension.get("signal") if isinstance(extension, dict) else None
    return signal if isinstance(signal, GoingAway) else None


class GracefulWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol whose shutdown tells the app instead of closing."""

    going_away: GoingAway | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:  # accepted for the app to answer
            self.going_away = GoingAway()
            scope.setdefault("extensions", {})[GOING_AWAY] = {"signal": self.going_away}

    def shutdown(self) -> None:
        going_away = self.going_away
        if (
            going_away is not None
            and going_away.taken
            and self.handshake_complete
            and not self.close_sent
            and not self.transport.is_closing()
        ):
            going_away.event.set()
            return
        super().shutdown()
