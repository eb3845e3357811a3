"""``GET /align/stream``: a WebSocket that aligns a video's frames, following faces over frames.

The client sends frames as binary messages, each one encoded image (JPEG, PNG, WebP, any
format ``/align`` takes), and options as text messages (JSON objects). The service answers
every frame, in order, with one text message: the ``/align`` answer for the frame plus
``"frame"`` (its 0-based number among the frames of this connection) and, per face,
``"track_id"`` (the same while the face is followed); a face followed from the previous
frame's landmarks has ``"box_source": "track"`` (``service.tracking`` says how, and when
the detector runs instead). A frame that cannot be answered gets
``{"frame": n, "error": reason, "detail": ...}`` with the reasons of ``/align``
(``not_an_image``, ``image_too_large``, ``queue_full``, ``queue_wait_too_long``, ...) and the
stream goes on; so does it after a bad options message, answered
``{"error": reason, "detail": ...}``.

Options, for the frames that follow (any subset, in one object):
``{"boxes": [[x_min, y_min, x_max, y_max], ...] | null}`` (the next frame starts from these
boxes instead of the detector; later detections use the detector again),
``{"redetect_every": N}`` (default DAN_STREAM_REDETECT_EVERY), ``{"smoothing": true|false}``
(default DAN_STREAM_SMOOTHING; ``service.smoothing``), ``{"max_faces": N}`` (at most
DAN_MAX_FACES, the default). An unknown option or a bad value changes nothing.

Every frame is a request to ``service.admission``, the one admission component: admitted
(or refused: ``overloaded``, ``queue_wait_too_long``, ...) when its turn comes, with its
deadline (DAN_REQUEST_DEADLINE_MS), and its faces queued on the one batching queue with the
faces of ``/align`` and of every other stream (``queue_full``, ``queue_wait_too_long``).
A stream's frames are handled one after the other; the service reads up to ``READ_AHEAD``
more while one is in progress and then stops reading, so a client sending faster than it is
answered is slowed down by TCP itself. The image limits of ``/align`` hold for every frame
(a message longer than twice DAN_MAX_IMAGE_BYTES closes the stream with 1009).

Close codes: 1000 after the client's close; 1001 ``shutting_down`` on SIGTERM, once the
frames read were answered (``service.stream_protocol``); without a valid key (DAN_API_KEYS)
the upgrade is refused with 401 ``unauthorized`` before any stream opens (1008 on a server
without the WebSocket denial extension); 1011 ``internal_error`` after an unexpected
failure; 1013 (try again later) ``too_many_streams`` when DAN_MAX_STREAMS are open, or
``not_ready`` while the model warms up; 4408 ``idle_timeout`` after
DAN_STREAM_IDLE_TIMEOUT_S without a message while no frame is in progress. Metrics:
``service.stream_metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from service.auth import CHALLENGE, ApiKeys, ErrorAnswer, presented_key
from service.batching import BatchingError
from service.config import Settings
from service.errors import (
    ImageTooLargeError,
    InternalError,
    InvalidBoxesError,
    InvalidRequestError,
    ServiceError,
    TooManyFacesError,
    UnauthorizedError,
    from_batching,
    log_level,
)
from service.initialisation import DetectorBoxes
from service.log_limit import LogLimiter
from service.metrics import ServiceMetrics
from service.pipeline import AlignedFace, Aligner, Alignment
from service.schemas import BOXES_ADAPTER, AlignResponse, ModelRef
from service.smoothing import OneEuroParameters
from service.stream_metrics import StreamMetrics
from service.stream_protocol import going_away_of
from service.tracking import StreamOptions, Tracker, align_frame, with_poses

log = logging.getLogger(__name__)

STREAM = "/align/stream"
READ_AHEAD = 2  # messages read while a frame is in progress, before reading stops
MAX_OPTIONS_CHARS = 65_536
MAX_REDETECT_EVERY = 100_000
OPTION_NAMES = ("boxes", "redetect_every", "smoothing", "max_faces")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_IDLE = 4408  # 4000-4999: the application's own; 408 as HTTP's request timeout
MAX_REASON_BYTES = 123  # a close frame's reason, at most

AnswerBuilder = Callable[[Alignment, ModelRef, float], AlignResponse]


@dataclass(frozen=True)
class _Frame:
    number: int
    data: bytes | None
    arrived: float  # event-loop time
    error: ServiceError | None = None  # refused on arrival


@dataclass(frozen=True)
class _Options:
    text: str


@dataclass(frozen=True)
class _End:
    code: int
    reason: str
    label: str  # dan_stream_closes_total's reason


_Item = _Frame | _Options | _End


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame carries (123 bytes of UTF-8)."""
    data = text.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def parse_options(text: str, current: StreamOptions, max_faces: int) -> StreamOptions:
    """The options after one options message (a JSON object), or a ``ServiceError`` saying
    what is wrong with it (then nothing changes). ``max_faces``: DAN_MAX_FACES."""
    if len(text) > MAX_OPTIONS_CHARS:
        raise InvalidRequestError(
            f"an options message is at most {MAX_OPTIONS_CHARS} characters, got {len(text)}"
        )
    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRequestError(
            f"an options message must be a JSON object ({e.msg} at character {e.pos}); frames "
            "are sent as binary messages"
        ) from None
    if not isinstance(given, dict) or not given:
        raise InvalidRequestError(
            f"an options message must be a JSON object with one or more of "
            f"{', '.join(OPTION_NAMES)}, got {text[:100]!r}"
        )
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise InvalidRequestError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(OPTION_NAMES)}"
        )
    changes: dict[str, Any] = {}
    if "redetect_every" in given:
        changes["redetect_every"] = _whole(
            given["redetect_every"], "redetect_every", MAX_REDETECT_EVERY
        )
    if "max_faces" in given:
        changes["max_faces"] = _whole(given["max_faces"], "max_faces", max_faces, "DAN_MAX_FACES")
    if "smoothing" in given:
        if not isinstance(given["smoothing"], bool):
            raise InvalidRequestError(
                f"smoothing must be true or false, got {json.dumps(given['smoothing'])}"
            )
        changes["smoothing"] = given["smoothing"]
    if "boxes" in given:
        try:
            boxes = BOXES_ADAPTER.validate_python(given["boxes"])
        except ValidationError as e:
            raise InvalidBoxesError(
                "boxes must be a non-empty list of [x_min, y_min, x_max, y_max] finite numbers, "
                f"or null: {e.errors(include_url=False)[0]['msg']}"
            ) from None
        limit = changes.get("max_faces", current.max_faces)
        if boxes is not None and len(boxes) > limit:
            raise TooManyFacesError(f"{len(boxes)} boxes sent; this stream takes {limit} faces")
        changes["boxes"] = None if boxes is None else tuple(tuple(b) for b in boxes)
    return replace(current, **changes)


def _whole(value: object, name: str, most: int, setting: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        where = f" ({setting})" if setting else ""
        raise InvalidRequestError(
            f"{name} must be a whole number from 1 to {most}{where}, got {json.dumps(value)}"
        )
    return value


class StreamHub:
    """The open streams: opens them within DAN_MAX_STREAMS, closes them on shutdown."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        answer: AnswerBuilder,
        refuse: ErrorAnswer,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stream_metrics = StreamMetrics(metrics.registry)
        self.answer = answer
        self.refuse = refuse
        self.keys = ApiKeys(settings.align_keys)
        self.smoothing = OneEuroParameters(
            min_cutoff_hz=settings.stream_smoothing_min_cutoff_hz,
            beta=settings.stream_smoothing_beta,
        )
        self.sessions: set[StreamSession] = set()
        self.aligner: Aligner | None = None
        self.model: ModelRef | None = None
        self.closing = False
        self.limiter = LogLimiter(log)
        self._emptied = asyncio.Event()
        self._emptied.set()

    def attach(self, aligner: Aligner, model: ModelRef) -> None:
        """What streams align with, once the lifespan has built it."""
        self.aligner = aligner
        self.model = model

    def options(self) -> StreamOptions:
        """A new stream's options: the settings' defaults."""
        return StreamOptions(
            redetect_every=self.settings.stream_redetect_every,
            smoothing=self.settings.stream_smoothing,
            max_faces=self.settings.max_faces,
        )

    async def serve(self, websocket: WebSocket) -> None:
        """One stream, from its upgrade request to its close."""
        if self.keys.required and not self.keys.accepts(presented_key(websocket.headers)):
            await self._deny(websocket)
            return
        going_away = going_away_of(websocket.scope)
        event = going_away.take() if going_away is not None else asyncio.Event()
        await websocket.accept()
        refusal = self._refusal()
        if refusal is not None:
            self.stream_metrics.closes.labels(refusal.label).inc()
            log.debug("stream refused: %s", refusal.reason)
            with contextlib.suppress(WebSocketDisconnect):  # the client may be gone already
                await websocket.close(refusal.code, close_reason(refusal.reason))
            return
        assert self.aligner is not None and self.model is not None
        session = StreamSession(self, self.aligner, self.model, websocket, event)
        self.sessions.add(session)
        self._emptied.clear()
        self.stream_metrics.open.inc()
        loop = asyncio.get_running_loop()
        opened = loop.time()
        label = "error"
        try:
            label = await session.run()
        finally:
            self.sessions.discard(session)
            if not self.sessions:
                self._emptied.set()
            self.stream_metrics.open.dec()
            self.stream_metrics.closes.labels(label).inc()
            self.stream_metrics.duration.observe(loop.time() - opened)
            log.debug("stream closed (%s) after %d frames", label, session.tracker.frames)

    def _refusal(self) -> _End | None:
        aligner = self.aligner
        if self.closing or (aligner is not None and aligner.admission.closing):
            return _End(
                CLOSE_GOING_AWAY, "shutting_down: the service is shutting down", "shutting_down"
            )
        if aligner is None or not aligner.admission.is_open:
            return _End(
                CLOSE_TRY_AGAIN_LATER,
                "not_ready: the model is still loading or warming up; retry shortly",
                "not_ready",
            )
        most = self.settings.max_streams
        if len(self.sessions) >= most:
            return _End(
                CLOSE_TRY_AGAIN_LATER,
                f"too_many_streams: {most} streams are open, the most this service takes "
                "(DAN_MAX_STREAMS); retry later",
                "too_many_streams",
            )
        return None

    async def _deny(self, websocket: WebSocket) -> None:
        presented = presented_key(websocket.headers)
        error = UnauthorizedError(
            f"GET {STREAM} needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            if presented is None
            else f"the API key sent is not one that GET {STREAM} accepts"
        )
        response = self.refuse("GET", STREAM, error, headers={"WWW-Authenticate": CHALLENGE})
        try:
            await websocket.send_denial_response(response)
        except RuntimeError:  # a server without the denial extension: refuse the upgrade
            await websocket.close(1008, close_reason(f"unauthorized: {error.message}"))

    async def close_all(self, timeout: float) -> None:
        """Shutdown: open no stream more, tell the open ones to answer what they read and
        close with 1001, and wait for them (at most ``timeout`` s)."""
        self.closing = True
        for session in list(self.sessions):
            session.going_away.set()
        if self.sessions:
            log.info("shutting down: closing %d streams", len(self.sessions))
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout)
            except TimeoutError:
                log.warning("%d streams still open after %s s", len(self.sessions), timeout)


class StreamSession:
    """One open stream: a reader taking messages off the socket, a processor answering them
    in order (see the module)."""

    def __init__(
        self,
        hub: StreamHub,
        aligner: Aligner,
        model: ModelRef,
        websocket: WebSocket,
        going_away: asyncio.Event,
    ) -> None:
        self.hub = hub
        self.aligner = aligner
        self.model = model
        self.websocket = websocket
        self.going_away = going_away
        settings = hub.settings
        self.tracker = Tracker(
            hub.options(),
            min_confidence=aligner.min_confidence,
            min_face_px=settings.detector_min_face,
            smoothing=hub.smoothing,
            has_detector=isinstance(aligner.default_initialiser, DetectorBoxes),
        )
        self.idle_s = settings.stream_idle_timeout_s
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(READ_AHEAD)
        self.busy = False  # a message is being answered
        self.frames_read = 0
        self.gone = False  # the client closed or went away
        self.last_activity = asyncio.get_running_loop().time()

    async def run(self) -> str:
        """Answer the stream until it closes; why it closed (a ``StreamMetrics`` reason)."""
        processor = asyncio.create_task(self._process(), name="stream-processor")
        reader = asyncio.create_task(self._read(processor), name="stream-reader")
        try:
            await asyncio.wait({processor})
        finally:
            for task in (reader, processor):
                task.cancel()
            await asyncio.gather(reader, processor, return_exceptions=True)
        if processor.cancelled():
            return "client"
        failure = processor.exception()
        if failure is None:
            return processor.result()
        if isinstance(failure, WebSocketDisconnect) or self.gone:
            return "client"
        self.hub.limiter.log(InternalError.reason, logging.ERROR, "stream failed", exc_info=failure)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.websocket.close(CLOSE_INTERNAL_ERROR, "internal_error: see the service log")
        return "error"

    async def _read(self, processor: asyncio.Task[str]) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.ensure_future(self.going_away.wait())
        receive: asyncio.Future[Any] | None = None
        try:
            while True:
                if self.going_away.is_set():
                    await self.queue.put(
                        _End(
                            CLOSE_GOING_AWAY,
                            "shutting_down: the service is shutting down; the frames read "
                            "were answered",
                            "shutting_down",
                        )
                    )
                    return
                if receive is None:
                    receive = asyncio.ensure_future(self.websocket.receive())
                working = self.busy or not self.queue.empty()
                wait = self.idle_s if working else self.last_activity + self.idle_s - loop.time()
                done, _ = await asyncio.wait(
                    {receive, stop}, timeout=max(wait, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
                if receive not in done:
                    if stop in done or self.busy or not self.queue.empty():
                        continue
                    if loop.time() - self.last_activity >= self.idle_s:
                        await self.queue.put(
                            _End(
                                CLOSE_IDLE,
                                f"idle_timeout: no message for {self.idle_s:g} s "
                                "(DAN_STREAM_IDLE_TIMEOUT_S)",
                                "idle_timeout",
                            )
                        )
                        return
                    continue
                message = receive.result()
                receive = None
                if message["type"] == "websocket.disconnect":
                    self.gone = True
                    processor.cancel()  # its work stops, its faces are withdrawn
                    return
                self.last_activity = loop.time()
                item = self._item(message, loop.time())
                if item is not None:
                    await self.queue.put(item)
        finally:
            stop.cancel()
            if receive is not None:
                receive.cancel()

    def _item(self, message: dict[str, Any], now: float) -> _Item | None:
        data = message.get("bytes")
        if data is not None:
            number = self.frames_read
            self.frames_read += 1
            self.hub.stream_metrics.received.inc()
            limit = self.aligner.limits.max_bytes
            if len(data) > limit:
                error = ImageTooLargeError(
                    f"the frame is {len(data)} bytes; the limit is {limit} bytes "
                    "(DAN_MAX_IMAGE_BYTES)"
                )
                return _Frame(number, None, now, error)
            return _Frame(number, data, now)
        text = message.get("text")
        return None if text is None else _Options(text)

    async def _process(self) -> str:
        loop = asyncio.get_running_loop()
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                await self.websocket.close(item.code, close_reason(item.reason))
                return item.label
            self.busy = True
            try:
                if isinstance(item, _Options):
                    answer = self._apply(item.text)
                else:
                    answer = await self._frame(item)
                if answer is not None:
                    await self.websocket.send_text(json.dumps(answer, separators=(",", ":")))
            finally:
                self.busy = False
                self.last_activity = loop.time()

    def _apply(self, text: str) -> dict[str, Any] | None:
        """Apply an options message; the error message to send, or None."""
        tracker = self.tracker
        try:
            tracker.options = parse_options(text, tracker.options, self.hub.settings.max_faces)
        except ServiceError as e:
            self._count_error(e, "options")
            return {"error": e.reason, "detail": e.message}
        del tracker.tracks[tracker.options.max_faces :]
        return None

    async def _frame(self, frame: _Frame) -> dict[str, Any]:
        """The answer to one frame: its faces, or its error."""
        hub = self.hub
        loop = asyncio.get_running_loop()
        try:
            if frame.error is not None:
                raise frame.error
            assert frame.data is not None
            alignment, ids, source = await self._align(frame.data)
            faces = self.tracker.smoothed(ids, alignment.faces)
            if any(face.pose is None for face in faces):
                faces = await loop.run_in_executor(self.aligner.executor, _posed, faces)
        except (ServiceError, BatchingError) as e:
            error = from_batching(e) if isinstance(e, BatchingError) else e
            self.tracker.failed()
            return self._frame_error(frame, error)
        alignment = replace(alignment, faces=faces)
        body = hub.answer(alignment, self.model, loop.time() - frame.arrived).model_dump(
            mode="json"
        )
        body["faces"] = [
            {"track_id": track_id, **face}
            for track_id, face in zip(ids, body["faces"], strict=True)
        ]
        metrics = hub.metrics
        metrics.faces.inc(len(faces))
        metrics.record_confidence(alignment.confidences, alignment.flagged, len(alignment.dropped))
        metrics.decode_duration.observe(alignment.decode_s)
        if alignment.detect_s is not None:
            metrics.detection_duration.observe(alignment.detect_s)
        hub.stream_metrics.frames.labels(source).inc()
        hub.stream_metrics.frame_duration.observe(loop.time() - frame.arrived)
        return {"frame": frame.number, **body}

    async def _align(self, data: bytes) -> tuple[Alignment, list[int], str]:
        """The frame's faces, their track ids and the source of the frame's faces."""
        async with self.aligner.admission.admit() as ticket:
            result = await align_frame(self.aligner, self.tracker, data, ticket)
        if result.redetection is not None and result.redetection != "boxes":
            self.hub.stream_metrics.redetections.labels(result.redetection).inc()
        return result.alignment, result.ids, result.source

    def _frame_error(self, frame: _Frame, error: ServiceError) -> dict[str, Any]:
        self._count_error(error, f"frame {frame.number}")
        self.hub.stream_metrics.frames.labels("error").inc()
        return {"frame": frame.number, "error": error.reason, "detail": error.message}

    def _count_error(self, error: ServiceError, what: str) -> None:
        self.hub.metrics.errors.labels(error.reason).inc()
        level = log_level(error)
        if level <= logging.DEBUG:
            log.debug("%s %s -> %s: %s", STREAM, what, error.reason, error.message)
        else:
            self.hub.limiter.log(
                error.reason, level, "%s %s -> %s: %s", STREAM, what, error.reason, error.message
            )


def _posed(faces: Sequence[AlignedFace]) -> list[AlignedFace]:
    """The faces, each with the pose of its (answered) landmarks."""
    missing = [face for face in faces if face.pose is None]
    posed = iter(with_poses(missing))
    return [next(posed) if face.pose is None else face for face in faces]


def add_route(app: FastAPI, hub: StreamHub) -> None:
    """``GET /align/stream`` on ``app``, served by ``hub``."""

    @app.websocket(STREAM)
    async def align_stream(websocket: WebSocket) -> None:
        await hub.serve(websocket)
