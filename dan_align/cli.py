"""``dan-align``: align photos and videos with a running service, or start the service.

    dan-align serve                                   # the service (python -m service)
    dan-align align photo.jpg --draw photo-landmarks.png
    dan-align video clip.mp4 --out landmarks.jsonl --draw clip-landmarks.mp4  # a stream

Exit codes of ``align`` and ``video`` (the most serious one wins):

- 0: every photo (frame) was answered, every photo with at least one face;
- 1: ``align`` only: some photo had no face (the others were answered);
- 2: usage: bad arguments, a file that cannot be read or written;
- 3: the service answered an error for some photo or frame (printed in its words);
- 4: the service could not be reached, or stayed busy (503) after the retries;
- 130: interrupted (Ctrl-C).

``serve`` exits as ``python -m service`` does: 0 after a clean shutdown, 1 if the
service stopped itself, 2 for invalid settings, 3 if start-up failed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from dan_align.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, DEFAULT_URL, Client, boxes_list
from dan_align.drawing import draw_faces
from dan_align.errors import (
    ConnectionFailedError,
    InputError,
    ServiceError,
    ServiceUnavailableError,
)
from dan_align.ordered import ordered_map
from dan_align.results import Alignment

EXIT_OK = 0
EXIT_NO_FACE = 1
EXIT_USAGE = 2
EXIT_SERVICE_ERROR = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130
# Not DAN_*: the service refuses to start with an unknown DAN_* variable in its environment.
URL_VARIABLE = "DANALIGN_URL"
API_KEY_VARIABLE = "DANALIGN_API_KEY"

EXIT_CODES = f"""exit codes:
  {EXIT_OK}    every photo (frame) answered; for align, every photo had a face
  {EXIT_NO_FACE}    align: some photo had no face
  {EXIT_USAGE}    usage: bad arguments, a file that cannot be read or written
  {EXIT_SERVICE_ERROR}    the service answered an error for some photo or frame
  {EXIT_UNREACHABLE}    the service could not be reached, or stayed busy (503) after the retries
  {EXIT_INTERRUPTED}  interrupted"""


class UsageError(Exception):
    """A mistake in the command line or its files: exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except UsageError as e:
        _say(str(e))
        return EXIT_USAGE
    except InputError as e:
        _say(str(e))
        return EXIT_USAGE
    except ConnectionFailedError as e:
        _say(f"{e}\n  is the service running? start one with: dan-align serve")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dan-align",
        description=_wrapped(
            "68 facial landmarks from a dan-align service: align photos and videos with a "
            "running service, or start one."
        ),
        epilog=EXIT_CODES,
        formatter_class=formatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    align = commands.add_parser(
        "align",
        help="send photos to the service, print the faces or draw them",
        description=_wrapped(
            "Send each photo to POST /align and print its faces (--json: the answers) or write "
            "the photo with its landmarks drawn (--draw)."
        ),
        epilog=EXIT_CODES,
        formatter_class=formatter,
    )
    align.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="image files")
    align.add_argument(
        "--boxes",
        metavar="JSON",
        help="face boxes [[x_min, y_min, x_max, y_max], ...] in pixels, as JSON text or "
        "@FILE.json, for every photo (default: the service finds the faces)",
    )
    align.add_argument(
        "--json",
        action="store_true",
        help="print each answer as one JSON line (the service's answer with a 'photo' field)",
    )
    align.add_argument(
        "--draw",
        type=Path,
        metavar="OUT",
        help="write the photo with boxes and landmarks drawn to OUT (.png, .jpg, ...); with "
        "several photos OUT is a folder and each is written as PHOTO-NAME.png in it",
    )
    align.add_argument(
        "--concurrency",
        type=_positive,
        default=2,
        help="photos in flight at once (default %(default)s)",
    )
    _connection_options(align)
    align.set_defaults(run=_align)

    video = commands.add_parser(
        "video",
        help="landmarks of every frame of a video, as JSON lines",
        description=_wrapped(
            "Decode the video with OpenCV and send its frames over one stream (GET "
            "/align/stream, a WebSocket; a few frames in flight): the service follows each face "
            "from frame to frame (its track_id stays the same) and runs its face detector only "
            "now and then. A service without the stream endpoint gets each frame as a POST "
            "/align request instead (--via). One JSON line per frame goes to --out: the answer "
            "with 'frame' and 'time_s', or 'error' and 'detail' for a frame the service "
            "refused."
        ),
        epilog=EXIT_CODES,
        formatter_class=formatter,
    )
    video.add_argument("video", type=Path, metavar="IN", help="video file (e.g. .mp4)")
    video.add_argument(
        "--out", type=Path, required=True, metavar="JSONL", help="landmarks, one line a frame"
    )
    video.add_argument(
        "--draw", type=Path, metavar="OUT", help="also write the frames, drawn, as a video (.mp4)"
    )
    video.add_argument(
        "--every", type=_positive, default=1, metavar="N", help="send every N-th frame (default 1)"
    )
    video.add_argument("--max-frames", type=_positive, metavar="N", help="stop after N frames")
    video.add_argument(
        "--concurrency",
        type=_positive,
        default=4,
        help="frames in flight at once (default %(default)s)",
    )
    video.add_argument(
        "--via",
        choices=("auto", "stream", "align"),
        default="auto",
        help="stream: one WebSocket stream; align: a POST /align request a frame; auto "
        "(default): the stream, or /align when the service has no stream endpoint",
    )
    video.add_argument(
        "--smoothing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="smooth the landmarks over time (the stream's One Euro filter; default: the "
        "service's DAN_STREAM_SMOOTHING)",
    )
    video.add_argument(
        "--redetect-every",
        type=_positive,
        metavar="N",
        help="the stream runs the face detector again every N frames (default: the service's "
        "DAN_STREAM_REDETECT_EVERY)",
    )
    _connection_options(video)
    video.set_defaults(run=_video)

    serve = commands.add_parser(
        "serve",
        help="start the service (the same as python -m service)",
        description=_wrapped(
            "Start the align service, configured by its DAN_* environment variables (see "
            "docker/README.md). --host and --port set DAN_HOST and DAN_PORT."
        ),
        epilog="exit codes: 0 clean shutdown, 1 the service stopped itself, 2 invalid settings, "
        "3 start-up failed",
    )
    serve.add_argument("--host", help="address to listen on (DAN_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (DAN_PORT, default 8000)")
    serve.set_defaults(run=_serve)
    return parser


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=min(shutil.get_terminal_size().columns, 100) - 2)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"the service (default ${URL_VARIABLE} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_VARIABLE) or None,
        help=f"sent as 'Authorization: Bearer KEY' (default ${API_KEY_VARIABLE})",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for each answer (default %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative,
        default=DEFAULT_RETRIES,
        help="retries of a 503 answer, each after its Retry-After (default %(default)s)",
    )


def _whole_at_least(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
    return value


def _positive(text: str) -> int:
    return _whole_at_least(1, text)


def _non_negative(text: str) -> int:
    return _whole_at_least(0, text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _client(args: argparse.Namespace) -> Client:
    if args.retries < 0:
        raise UsageError(f"--retries must be >= 0, got {args.retries}")
    return Client(args.url, args.api_key, timeout=args.timeout, retries=args.retries)


# -- align ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Photo:
    path: Path
    data: bytes


def _align(args: argparse.Namespace) -> int:
    boxes = _boxes(args.boxes)
    photos = [_read(path) for path in args.photos]  # every file readable before any is sent
    targets = _draw_targets(args.draw, args.photos)
    worst = EXIT_OK
    with _client(args) as client:

        def send(photo: _Photo) -> Alignment:
            return client.align(photo.data, boxes)

        bar = tqdm(total=len(photos), unit="photo", disable=True if len(photos) < 2 else None)
        with bar:
            for photo, future in ordered_map(send, photos, args.concurrency):
                try:
                    alignment = future.result()
                except ServiceUnavailableError as e:
                    _refused(photo, e, args.json, bar)
                    worst = max(worst, EXIT_UNREACHABLE)
                except ServiceError as e:
                    _refused(photo, e, args.json, bar)
                    worst = max(worst, EXIT_SERVICE_ERROR)
                else:
                    if not alignment.faces:
                        worst = max(worst, EXIT_NO_FACE)
                    _report(photo, alignment, args.json, bar)
                    if targets is not None:
                        _write_drawing(photo, alignment, targets[photo.path])
                bar.update(1)
    return worst


def _boxes(text: str | None) -> list[list[float]] | None:
    if text is None:
        return None
    source = "--boxes"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as e:
            raise UsageError(f"cannot read the boxes file {source}: {e.strerror or e}") from e
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{source} is not JSON ({e.msg}); expected [[x_min, y_min, x_max, y_max], ...]"
        ) from e
    try:
        return boxes_list(parsed)
    except InputError as e:
        raise UsageError(f"{source}: {e}") from e


def _read(path: Path) -> _Photo:
    try:
        return _Photo(path, path.read_bytes())
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e


def _draw_targets(draw: Path | None, photos: Sequence[Path]) -> dict[Path, Path] | None:
    if draw is None:
        return None
    if len(photos) == 1 and not draw.is_dir():
        if cv2.haveImageWriter(str(draw)) is False:
            raise UsageError(f"--draw {draw}: cannot write that kind of image (try .png or .jpg)")
        return {photos[0]: draw}
    if draw.exists() and not draw.is_dir():
        raise UsageError(f"--draw {draw}: with several photos, --draw must be a folder")
    names = [p.stem for p in photos]
    if len(set(names)) != len(names):
        raise UsageError("--draw: several photos have the same name; draw them one by one")
    draw.mkdir(parents=True, exist_ok=True)
    return {p: draw / f"{p.stem}.png" for p in photos}


def _report(photo: _Photo, alignment: Alignment, as_json: bool, bar: tqdm[Any]) -> None:
    if as_json:
        _out(json.dumps({"photo": str(photo.path), **alignment.raw}), bar)
        return
    size = alignment.image
    count = len(alignment.faces)
    total = max((f.timings.total_ms for f in alignment.faces if f.timings), default=None)
    took = "" if total is None else f", {total:.0f} ms"
    _out(
        f"{photo.path}: {count} face{'' if count == 1 else 's'}, {size.width}x{size.height}, "
        f"{alignment.model.name} {alignment.model.version}{took}",
        bar,
    )
    for number, face in enumerate(alignment.faces, start=1):
        box = ", ".join(f"{v:.1f}" for v in face.box)
        parts = [f"  face {number}: box [{box}] ({face.box_source}"]
        parts[0] += "" if face.score is None else f", score {face.score:.2f}"
        parts[0] += ")"
        if face.confidence is not None:
            status = "" if face.status is None else f" ({face.status})"
            parts.append(f"confidence {face.confidence:.2f}{status}")
        elif face.status is not None:
            parts.append(f"status {face.status}")
        if face.pose is not None:
            pose = face.pose
            parts.append(f"yaw {pose.yaw:.1f}° pitch {pose.pitch:.1f}° roll {pose.roll:.1f}°")
        _out(", ".join(parts), bar)


def _refused(photo: _Photo, error: ServiceError, as_json: bool, bar: tqdm[Any]) -> None:
    if as_json:
        record = {
            "photo": str(photo.path),
            "status": error.status,
            "error": error.error,
            "detail": error.detail,
        }
        _out(json.dumps(record), bar)
    _say(f"{photo.path}: the service answered {error.status} {error.error}: {error.detail}", bar)


def _write_drawing(photo: _Photo, alignment: Alignment, target: Path) -> None:
    pixels = displayed_bgr(photo.data)
    drawn = draw_faces(pixels, [(f.box, f.landmarks) for f in alignment.faces])
    try:
        ok = cv2.imwrite(str(target), drawn)
    except cv2.error as e:
        raise UsageError(f"cannot write {target}: {e}") from e
    if not ok:
        raise UsageError(f"cannot write {target} (does its folder exist?)")


def displayed_bgr(data: bytes) -> npt.NDArray[np.uint8]:
    """An image file as 8-bit BGR pixels as displayed (EXIF orientation applied), like the
    service sees it, so that its landmarks land where they belong."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


# -- video ------------------------------------------------------------------------------------


def _video(args: argparse.Namespace) -> int:
    from dan_align.stream import NoStreamEndpointError
    from dan_align.video import align_video

    if not args.video.is_file():
        raise UsageError(f"cannot read {args.video}: no such file")
    try:
        out = args.out.open("w")
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from e
    with out, _client(args) as client:
        try:
            summary = align_video(
                client,
                args.video,
                out,
                draw=args.draw,
                every=args.every,
                max_frames=args.max_frames,
                concurrency=args.concurrency,
                via=args.via,
                smoothing=args.smoothing,
                redetect_every=args.redetect_every,
            )
        except NoStreamEndpointError as e:
            _say(f"{e}; try --via align")
            return EXIT_SERVICE_ERROR
        except ServiceError as e:  # the stream refused (401 unauthorized, or a bad option)
            _say(f"the service answered {e.status} {e.error}: {e.detail}")
            return EXIT_SERVICE_ERROR
    through = "one stream" if summary.via == "stream" else "/align"
    _say(
        f"{args.video}: {summary.frames} frames sent through {through}, {summary.answered} "
        f"answered ({summary.faces} faces), {summary.refused} refused; landmarks in {args.out}"
        + ("" if args.draw is None else f", drawn in {args.draw}")
    )
    worst = EXIT_OK
    if summary.closed is not None:
        _say(f"the service closed the stream early: {summary.closed.code} {summary.closed.reason}")
        worst = EXIT_UNREACHABLE if summary.closed.busy else EXIT_SERVICE_ERROR
    if summary.last_error is None:
        return worst
    last = summary.last_error
    status = f"{last.status} " if last.status else ""
    _say(f"the last refusal: {status}{last.error}: {last.detail}")
    return max(worst, EXIT_UNREACHABLE if summary.busy else EXIT_SERVICE_ERROR)


# -- serve ------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    if args.host is not None:
        os.environ["DAN_HOST"] = args.host
    if args.port is not None:
        os.environ["DAN_PORT"] = str(args.port)
    try:
        from service.__main__ import main as serve
    except ImportError as e:
        raise UsageError(
            f"the service is not installed here ({e}); install it with pip install -e '.[cpu]'"
        ) from e
    return serve()


# -- output -----------------------------------------------------------------------------------


def _out(line: str, bar: tqdm[Any] | None = None) -> None:
    _write(line, sys.stdout, bar)


def _say(line: str, bar: tqdm[Any] | None = None) -> None:
    _write(f"dan-align: {line}", sys.stderr, bar)


def _write(line: str, stream: TextIO, bar: tqdm[Any] | None) -> None:
    if bar is not None and not bar.disable:
        tqdm.write(line, file=stream)
    else:
        stream.write(line + "\n")
        stream.flush()
