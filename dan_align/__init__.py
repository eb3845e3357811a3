"""dan_align: the Python client and command line of the dan-align service.

    from dan_align import Client

    alignment = Client("http://127.0.0.1:8000").align("photo.jpg")
    print(alignment.faces[0].landmarks)  # (68, 2) numpy array, image pixels

``Client`` / ``AsyncClient`` (``dan_align.client``) send images to ``POST /align``
and return typed results (``dan_align.results``); ``open_stream``
(``dan_align.stream``) sends a video's frames over ``GET /align/stream``, where
each face keeps its ``track_id``; errors are ``DanAlignError`` subclasses
(``dan_align.errors``). ``dan_align.drawing`` draws landmarks the way the
service's demo page does; ``dan_align.cli`` is the ``dan-align`` command. Only
httpx, websockets, numpy, opencv and pillow are needed: the service itself is not
imported (``dan-align serve`` imports it when run).
"""

from __future__ import annotations

from dan_align.client import AsyncClient, Client
from dan_align.errors import (
    ConnectionFailedError,
    DanAlignError,
    InputError,
    ResponseFormatError,
    ServiceError,
    ServiceUnavailableError,
)
from dan_align.results import Alignment, Face, ImageSize, ModelRef, Pose, Timings
from dan_align.stream import (
    NoStreamEndpointError,
    Stream,
    StreamAnswer,
    StreamClosedError,
    open_stream,
)

__all__ = [
    "Alignment",
    "AsyncClient",
    "Client",
    "ConnectionFailedError",
    "DanAlignError",
    "Face",
    "ImageSize",
    "InputError",
    "ModelRef",
    "NoStreamEndpointError",
    "Pose",
    "ResponseFormatError",
    "ServiceError",
    "ServiceUnavailableError",
    "Stream",
    "StreamAnswer",
    "StreamClosedError",
    "Timings",
    "open_stream",
]
