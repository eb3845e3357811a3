"""``open_stream``: a video's frames to ``GET /align/stream`` (a WebSocket), answers in order.

    from dan_align.stream import open_stream

    with open_stream("http://127.0.0.1:8000", smoothing=False) as stream:
        for frame, answer in stream.align_all(frames):  # a few frames in flight at once
            print(answer.frame, [f.track_id for f in answer.alignment.faces])

The service follows each face from frame to frame (its ``track_id`` stays the same while
it is followed) and runs its face detector only now and then. ``open_stream`` takes the
stream's options (``boxes``, ``redetect_every``, ``smoothing``, ``max_faces``: sent as the
first message; ``Stream.set_options`` sends more later). A frame is any image ``align``
takes (``dan_align.images``); ``Stream.send`` sends one, ``Stream.receive`` returns the next
answer, a ``StreamAnswer``: the frame's number and its ``Alignment``, or the service's
``error`` and ``detail`` for a frame it could not answer (the stream goes on). A bad option
raises ``ServiceError`` (status 422). A stream the service closes raises
``StreamClosedError`` with the close code and reason (``busy`` for 1013, too many streams
or not ready, and 1001, shutting down). A service without the stream endpoint (an older
one) raises ``NoStreamEndpointError`` on opening: ``dan-align video`` then sends the
frames to ``/align`` instead.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from dan_align.client import DEFAULT_TIMEOUT_S, DEFAULT_URL, USER_AGENT, Boxes, boxes_list
from dan_align.closing import Closing
from dan_align.errors import (
    ConnectionFailedError,
    DanAlignError,
    InputError,
    ResponseFormatError,
    ServiceError,
)
from dan_align.images import ImageInput, encode_image
from dan_align.results import Alignment, parse_alignment

log = logging.getLogger(__name__)

STREAM_PATH = "/align/stream"
DEFAULT_WINDOW = 4  # frames in flight
# What a server without the stream endpoint answers the upgrade: no route (404), a WebSocket
# route missing (403: Starlette's refusal), the method (405), no WebSocket support (426).
NO_ENDPOINT_STATUSES = frozenset({403, 404, 405, 426})
BUSY_CLOSE_CODES = frozenset({1001, 1013})
MAX_ANSWER_BYTES = 16 * 1024 * 1024

T = TypeVar("T")


class NoStreamEndpointError(DanAlignError):
    """The service has no ``GET /align/stream`` (an older service): use ``/align``."""


class StreamClosedError(DanAlignError):
    """The service closed the stream: its close ``code`` and ``reason``."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the service closed the stream ({code}: {reason or 'no reason'})")
        self.code = code
        self.reason = reason

    @property
    def busy(self) -> bool:
        """Too many streams, not ready, or shutting down: try again later."""
        return self.code in BUSY_CLOSE_CODES


@dataclass(frozen=True)
class StreamAnswer:
    """The answer to one frame: ``alignment`` (faces with ``track_id``), or ``error`` and
    ``detail`` when the service could not answer it."""

    frame: int
    alignment: Alignment | None
    error: str | None = None
    detail: str | None = None
    raw: dict[str, Any] | None = None


def stream_url(url: str) -> str:
    """The WebSocket URL of the stream endpoint of a service at ``url`` (http or https)."""
    base = url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + STREAM_PATH
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + STREAM_PATH
    if base.startswith(("ws://", "wss://")):
        return base if base.endswith(STREAM_PATH) else base + STREAM_PATH
    raise InputError(f"expected a service URL http://HOST:PORT, got {url!r}")


def options_message(
    *,
    boxes: Boxes | None = None,
    redetect_every: int | None = None,
    smoothing: bool | None = None,
    max_faces: int | None = None,
) -> dict[str, Any]:
    """The options given (None: left as they are) as the JSON object the service takes."""
    options: dict[str, Any] = {}
    if boxes is not None:
        options["boxes"] = boxes_list(boxes)
    if redetect_every is not None:
        options["redetect_every"] = redetect_every
    if smoothing is not None:
        options["smoothing"] = smoothing
    if max_faces is not None:
        options["max_faces"] = max_faces
    return options


class Stream(Closing):
    """An open stream (use ``with``, or ``close`` it)."""

    def __init__(self, connection: ClientConnection, url: str, timeout: float) -> None:
        self.connection = connection
        self.url = url
        self.timeout = timeout

    def send(self, image: ImageInput) -> None:
        """Send one frame (its answer comes with ``receive``, in order)."""
        data = image if isinstance(image, bytes) else encode_image(image).data
        try:
            self.connection.send(data)
        except ConnectionClosed as e:
            raise _closed(e) from e

    def set_options(self, **options: Any) -> None:
        """Options for the frames sent from now on (``options_message``'s names)."""
        message = options_message(**options)
        if message:
            try:
                self.connection.send(json.dumps(message))
            except ConnectionClosed as e:
                raise _closed(e) from e

    def receive(self) -> StreamAnswer:
        """The next answer; ``ServiceError`` for a bad option, ``StreamClosedError`` when the
        service closed the stream, ``ConnectionFailedError`` after ``timeout`` s."""
        try:
            message = self.connection.recv(timeout=self.timeout)
        except ConnectionClosed as e:
            raise _closed(e) from e
        except TimeoutError as e:
            raise ConnectionFailedError(self.url, f"no answer within {self.timeout:g} s") from e
        return parse_answer(message)

    def align_all(
        self,
        frames: Iterable[T],
        encode: Callable[[T], ImageInput] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> Iterator[tuple[T, StreamAnswer]]:
        """``(frame, answer)`` for every frame, in order, at most ``window`` in flight (the
        service works on the next one while an answer travels). ``encode`` makes an image of
        a frame (default: the frame is one)."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        pending: deque[T] = deque()
        for frame in frames:
            self.send(encode(frame) if encode is not None else frame)  # type: ignore[arg-type]
            pending.append(frame)
            if len(pending) >= window:
                yield pending.popleft(), self.receive()
        while pending:
            yield pending.popleft(), self.receive()

    def close(self) -> None:
        self.connection.close()


def open_stream(
    url: str = DEFAULT_URL,
    api_key: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    **options: Any,
) -> Stream:
    """Open a stream to the service at ``url`` with these options (``options_message``)."""
    target = stream_url(url)
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        connection = connect(
            target,
            additional_headers=headers,
            user_agent_header=None,
            compression=None,  # frames are compressed images already
            open_timeout=timeout,
            max_size=MAX_ANSWER_BYTES,
            legacy=True,  # the connection itself: a Stream holds it (websockets 17)
        )
    except InvalidStatus as e:
        raise _refused(url, e) from e
    except InvalidURI as e:
        raise InputError(f"not a service URL: {url!r} ({e})") from e
    except (InvalidHandshake, OSError, TimeoutError) as e:
        raise ConnectionFailedError(url, str(e) or type(e).__name__) from e
    stream = Stream(connection, url, timeout)
    try:
        stream.set_options(**options)
    except BaseException:
        stream.close()
        raise
    return stream


def parse_answer(message: str | bytes) -> StreamAnswer:
    """A ``StreamAnswer`` of one text message of the service; ``ServiceError`` for the answer
    to an options message."""
    try:
        body = json.loads(message)
    except ValueError as e:
        raise ResponseFormatError("the stream sent a message that is not JSON") from e
    if not isinstance(body, dict):
        raise ResponseFormatError(f"expected a JSON object from the stream, got {body!r:.100}")
    if "frame" not in body:
        if isinstance(body.get("error"), str):
            raise ServiceError(422, body["error"], str(body.get("detail", "")))
        raise ResponseFormatError(f"a stream answer without 'frame': {body!r:.200}")
    frame = int(body["frame"])
    if isinstance(body.get("error"), str):
        return StreamAnswer(frame, None, body["error"], str(body.get("detail", "")), body)
    return StreamAnswer(frame, parse_alignment(body), raw=body)


def _refused(url: str, error: InvalidStatus) -> DanAlignError:
    response = error.response
    status = response.status_code
    if status in NO_ENDPOINT_STATUSES:
        return NoStreamEndpointError(f"the service at {url} has no stream endpoint ({status})")
    reason, detail = f"http_{status}", response.reason_phrase
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        reason, detail = body["error"], str(body.get("detail", ""))
    return ServiceError(status, reason, detail)


def _closed(error: ConnectionClosed) -> StreamClosedError:
    close = error.rcvd
    if close is None:
        return StreamClosedError(None, "the connection was lost")
    return StreamClosedError(close.code, close.reason)
