"""Landmarks for every frame of a video, through ``POST /align`` one frame at a time.

The service has no stream endpoint yet, so each frame (decoded with OpenCV) is
sent as a JPEG to ``/align``, a few frames in flight at once (the service
batches them). Each frame's answer is one line of a JSON Lines file:
``{"frame": i, "time_s": t, "image": ..., "model": ..., "faces": [...]}`` (the
``/align`` answer with the frame's number and time), or
``{"frame": i, "time_s": t, "status": ..., "error": ..., "detail": ...}`` for a
frame the service refused. Optionally the frames are written again, drawn
(``dan_align.drawing``), as a video.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from dan_align.client import Client
from dan_align.drawing import draw_faces
from dan_align.errors import InputError, ServiceError, ServiceUnavailableError
from dan_align.ordered import ordered_map
from dan_align.results import Alignment

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # when the file does not say
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


@dataclass(frozen=True)
class Frame:
    index: int
    time_s: float
    pixels: npt.NDArray[np.uint8]  # BGR


@dataclass
class VideoSummary:
    """What ``align_video`` did: frames sent, answered, refused, and the faces found."""

    frames: int = 0
    answered: int = 0
    refused: int = 0
    busy: int = 0  # of the refused: 503 after the client's retries
    faces: int = 0
    last_error: ServiceError | None = None


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
) -> VideoSummary:
    """Align the frames of ``source`` (every ``every``-th, at most ``max_frames``) into ``out``.

    ``draw``: also write the frames sent, with their landmarks, as a video (at the source's
    frame rate divided by ``every``). ``progress``: a progress bar on stderr (None: when it is
    a terminal). A frame the service refuses is recorded and the next one sent; a service that
    cannot be reached raises ``ConnectionFailedError`` (the lines written so far stay).
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

        def send(frame: Frame) -> Alignment:
            ok, encoded = cv2.imencode(".jpg", frame.pixels, quality)
            if not ok:  # pragma: no cover - any decoded frame encodes
                raise InputError(f"cannot encode frame {frame.index} as JPEG")
            return client.align(encoded.tobytes())

        frames = _frames(capture, fps, every, max_frames)
        bar = tqdm(total=total, unit="frame", desc=source.name, disable=_disabled(progress))
        with bar:
            for frame, future in ordered_map(send, frames, concurrency):
                summary.frames += 1
                record: dict[str, Any] = {"frame": frame.index, "time_s": round(frame.time_s, 4)}
                alignment: Alignment | None = None
                try:
                    alignment = future.result()
                except ServiceError as e:
                    summary.refused += 1
                    summary.busy += isinstance(e, ServiceUnavailableError)
                    summary.last_error = e
                    record.update(status=e.status, error=e.error, detail=e.detail)
                    log.warning("frame %d refused: %s", frame.index, e)
                else:
                    summary.answered += 1
                    summary.faces += len(alignment.faces)
                    record.update(alignment.raw)
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
