"""Landmarks for every frame of a video, through the stream endpoint (or ``/align``).

Each frame (decoded with OpenCV) is sent as a JPEG over one ``GET /align/stream``
WebSocket (``dan_align.stream``), a few frames in flight: the service follows each face
from frame to frame (its ``track_id`` stays the same) and runs its detector only now and
then. A service without the stream endpoint (an older one) gets each frame as a
``POST /align`` request instead, a few in flight at once (``via="auto"``, the default;
``"stream"`` and ``"align"`` choose). Each frame's answer is one line of a JSON Lines file:
``{"frame": i, "time_s": t, "image": ..., "model": ..., "faces": [...]}`` (the answer with
the video's frame number and time), or ``{"frame": i, "time_s": t, "error": ...,
"detail": ...}`` (with ``"status"``, the HTTP status, from ``/align``) for a frame the
service refused. Optionally the frames are written again, drawn (``dan_align.drawing``),
as a video.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from dan_align.client import Client
from dan_align.drawing import draw_faces
from dan_align.errors import InputError, ServiceError, ServiceUnavailableError
from dan_align.ordered import ordered_map
from dan_align.results import Alignment
from dan_align.stream import NoStreamEndpointError, StreamClosedError, open_stream

log = logging.getLogger(__name__)

Via = Literal["auto", "stream", "align"]
DEFAULT_FPS = 25.0  # when the file does not say
# A frame refused for these reasons was refused because the service was busy (exit code 4).
BUSY_REASONS = frozenset(
    {"queue_full", "queue_wait_too_long", "overloaded", "not_ready", "shutting_down"}
)
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


@dataclass(frozen=True)
class Frame:
    index: int
    time_s: float
    pixels: npt.NDArray[np.uint8]  # BGR


@dataclass
class VideoSummary:
    """What ``align_video`` did: frames sent, answered, refused, and the faces found; how
    (``via``: stream or align) and, when the service closed the stream early, its close."""

    frames: int = 0
    answered: int = 0
    refused: int = 0
    busy: int = 0  # of the refused: 503 after the client's retries, or a busy stream's refusal
    faces: int = 0
    last_error: ServiceError | None = None
    via: str = "align"
    closed: StreamClosedError | None = None


def align_video(
    client: Client,
    source: Path,
    out: TextIO,
    *,
    draw: Path | None = None,
    every: int = 1,
    max_frames: int | None = None,
    concurrency: int = 2,
    jpeg_quality: int = 95,
    progress: bool | None = None,
    via: Via = "auto",
    smoothing: bool | None = None,
    redetect_every: int | None = None,
) -> VideoSummary:
    """Align the frames of ``source`` (every ``every``-th, at most ``max_frames``) into ``out``.

    ``draw``: also write the frames sent, with their landmarks, as a video (at the source's
    frame rate divided by ``every``). ``progress``: a progress bar on stderr (None: when it is
    a terminal). ``via``: the stream, falling back to ``/align`` when the service has no stream
    endpoint (auto), or either; ``smoothing`` and ``redetect_every``: the stream's options
    (None: the service's defaults). ``concurrency``: frames in flight. A frame the service
    refuses is recorded and the next one sent; a stream the service closes stops the video
    (``VideoSummary.closed``); a service that cannot be reached raises
    ``ConnectionFailedError`` (the lines written so far stay).
    """
    if every < 1:
        raise InputError(f"--every must be at least 1, got {every}")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise InputError(f"cannot open {source} as a video (missing, or a format OpenCV lacks)")
    writer: cv2.VideoWriter | None = None
    summary = VideoSummary()
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        total = (count + every - 1) // every if count > 0 else None
        if total is not None and max_frames is not None:
            total = min(total, max_frames)
        quality = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]

        def encode(frame: Frame) -> bytes:
            ok, encoded = cv2.imencode(".jpg", frame.pixels, quality)
            if not ok:  # pragma: no cover - any decoded frame encodes
                raise InputError(f"cannot encode frame {frame.index} as JPEG")
            return bytes(encoded.tobytes())

        frames = _frames(capture, fps, every, max_frames)
        bar = tqdm(total=total, unit="frame", desc=source.name, disable=_disabled(progress))
        with bar:
            for frame, alignment, record in _answers(
                client, frames, encode, concurrency, summary, via, smoothing, redetect_every
            ):
                summary.frames += 1
                if alignment is not None:
                    summary.answered += 1
                    summary.faces += len(alignment.faces)
                record = {"frame": frame.index, "time_s": round(frame.time_s, 4), **record}
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                if draw is not None:
                    if writer is None:
                        writer = _open_writer(draw, fps / every, frame.pixels)
                    faces = [] if alignment is None else alignment.faces
                    writer.write(draw_faces(frame.pixels, [(f.box, f.landmarks) for f in faces]))
                bar.update(1)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        out.flush()
    return summary


def _answers(
    client: Client,
    frames: Iterator[Frame],
    encode: Callable[[Frame], bytes],
    concurrency: int,
    summary: VideoSummary,
    via: Via,
    smoothing: bool | None,
    redetect_every: int | None,
) -> Iterator[tuple[Frame, Alignment | None, dict[str, Any]]]:
    """``(frame, alignment or None, the record's answer fields)`` for every frame, in order:
    through the stream, or ``/align``. Refusals are counted in ``summary``."""
    if via != "align":
        try:
            stream = open_stream(
                client.url,
                client.api_key,
                timeout=client.timeout,
                smoothing=smoothing,
                redetect_every=redetect_every,
            )
        except NoStreamEndpointError as e:
            if via == "stream":
                raise
            log.info("%s; sending each frame to /align", e)
        else:
            summary.via = "stream"
            with stream:
                try:
                    for frame, answer in stream.align_all(frames, encode, concurrency):
                        if answer.error is not None:
                            error = ServiceError(0, answer.error, answer.detail or "")
                            _refused(summary, frame, error, answer.error in BUSY_REASONS)
                            yield frame, None, {"error": answer.error, "detail": answer.detail}
                        else:
                            assert answer.alignment is not None
                            fields = {k: v for k, v in (answer.raw or {}).items() if k != "frame"}
                            yield frame, answer.alignment, fields
                except StreamClosedError as e:
                    summary.closed = e
                    log.warning("the service closed the stream: %s", e)
            return

    def send(frame: Frame) -> Alignment:
        return client.align(encode(frame))

    for frame, future in ordered_map(send, frames, concurrency):
        try:
            alignment = future.result()
        except ServiceError as e:
            _refused(summary, frame, e, isinstance(e, ServiceUnavailableError))
            yield frame, None, {"status": e.status, "error": e.error, "detail": e.detail}
        else:
            yield frame, alignment, dict(alignment.raw)


def _refused(summary: VideoSummary, frame: Frame, error: ServiceError, busy: bool) -> None:
    summary.refused += 1
    summary.busy += busy
    summary.last_error = error
    log.warning("frame %d refused: %s: %s", frame.index, error.error, error.detail)


def _frames(
    capture: cv2.VideoCapture, fps: float, every: int, max_frames: int | None
) -> Iterator[Frame]:
    index = 0
    sent = 0
    while max_frames is None or sent < max_frames:
        ok, pixels = capture.read()
        if not ok:
            return
        if index % every == 0:
            yield Frame(index, index / fps, np.asarray(pixels, dtype=np.uint8))
            sent += 1
        index += 1


def _open_writer(path: Path, fps: float, first: npt.NDArray[np.uint8]) -> cv2.VideoWriter:
    height, width = first.shape[:2]
    fourcc = cv2.VideoWriter.fourcc(*_FOURCC.get(path.suffix.lower(), "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise InputError(f"cannot write the video {path} (an unknown extension or no codec)")
    return writer


def _disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None shows the bar only on a terminal."""
    return None if progress is None else not progress
