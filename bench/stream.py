"""Video through ``GET /align/stream`` against per-frame ``/align``: accuracy, jitter, frames/s.

    python -m bench.stream                      # the short default run (the README's numbers)
    python -m bench.stream --photos 4 --clients 1,8 --throughput-frames 40

Test videos are made from 300-W common-test photos with their annotated landmarks, so
every frame has its ground truth:

- a smooth path: the photo placed on a 640 x 480 canvas (the face's inter-ocular distance
  ``--face-iod`` px) and moved over ``--frames`` frames by translation (a Lissajous path,
  up to 140 px from the centre), scale (x 0.75 to 1.25) and in-plane rotation (up to
  15 degrees), Gaussian noise (``--noise`` grey levels) and JPEG re-encoding (quality
  ``--jpeg-quality``) on every frame; the landmarks moved by the same transforms;
- a still sequence: the first photo placed the same way ``--frames`` times, each frame with
  its own noise.

Starts ``python -m service`` with the released model and CenterFace (or uses ``--url``) and
reports:

1. NME (mean landmark error / inter-ocular distance of the truth, %) per frame when the
   stream tracks (smoothing off, and on) against ``/align`` without boxes on every frame
   (the detector on every frame); frames where the face was not found are counted apart;
2. jitter on the still sequence: the mean frame-to-frame motion of the landmarks, % of the
   inter-ocular distance, stream with and without smoothing (``/align`` for reference);
3. frames per second through the stream against ``/align`` without boxes on the same frames,
   with one client and with ``--clients`` each sending its own video (a stream keeps
   ``--window`` frames in flight; an ``/align`` client one request).

The issue's targets are checked at the end: tracking NME within 0.2 points of per-frame
detection, jitter with smoothing at most half of the jitter without, the stream at least
1.5x the frames per second of ``/align``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import numpy.typing as npt

from bench.samples import boxed_faces
from bench.serving import service_url
from dan_align.client import Client
from dan_align.errors import ServiceError
from dan_align.results import Alignment
from dan_align.stream import open_stream
from model.arrays import FloatArray
from model.geometry import apply_affine, compose_affine
from model.landmarks import inter_ocular_distance
from training.arguments import (
    jpeg_quality,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    positive_ints,
)
from training.dataset import SPLITS, Sample
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

CANVAS = (640, 480)  # width, height
PATH_SHIFT = (140.0, 60.0)  # px: the Lissajous path's half-widths
PATH_SCALE = 0.25  # scale 1 -+ this
PATH_ROTATION_DEG = 15.0

# Targets of the issue.
NME_MARGIN_POINTS = 0.2
JITTER_RATIO = 0.5
SPEEDUP = 1.5


@dataclass(frozen=True)
class Video:
    """Encoded frames and the true landmarks (68, 2) of each."""

    name: str
    frames: list[bytes]
    truth: list[FloatArray]


def placement(landmarks: FloatArray, face_iod: float) -> FloatArray:
    """Photo -> canvas transform (2, 3): the face centred, its inter-ocular distance
    ``face_iod`` px, not rotated."""
    scale = face_iod / float(inter_ocular_distance(landmarks))
    centre = landmarks.mean(axis=0)
    cx, cy = (CANVAS[0] - 1) / 2.0, (CANVAS[1] - 1) / 2.0
    return np.array([[scale, 0.0, cx - scale * centre[0]], [0.0, scale, cy - scale * centre[1]]])


def path_motion(t: float) -> FloatArray:
    """Canvas -> canvas transform (2, 3) at time ``t`` in [0, 1] of the smooth path: about the
    canvas centre, a rotation and scale, then a shift."""
    angle = math.radians(PATH_ROTATION_DEG) * math.sin(3.0 * math.pi * t)
    scale = 1.0 + PATH_SCALE * math.sin(2.0 * math.pi * t + math.pi / 3.0)
    dx = PATH_SHIFT[0] * math.sin(2.0 * math.pi * t)
    dy = PATH_SHIFT[1] * math.sin(4.0 * math.pi * t)
    cx, cy = (CANVAS[0] - 1) / 2.0, (CANVAS[1] - 1) / 2.0
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([cx, cy])
    return np.hstack([rot, (centre + np.array([dx, dy]) - rot @ centre)[:, None]])


def render(
    photo: npt.NDArray[np.uint8],
    transform: FloatArray,
    rng: np.random.Generator,
    noise: float,
    quality: int,
) -> bytes:
    """The photo through ``transform`` on the canvas, with noise, as a JPEG."""
    warped = cv2.warpAffine(
        photo, transform, CANVAS, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    noisy = np.clip(warped + rng.normal(0.0, noise, warped.shape), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cannot encode a frame as JPEG")
    return bytes(encoded.tobytes())


def make_video(
    sample: Sample, frames: int, *, still: bool, face_iod: float, noise: float, quality: int
) -> Video:
    """The smooth-path (or still) video of one photo, seeded by its name."""
    read = cv2.imread(str(sample.image_path), cv2.IMREAD_COLOR)
    if read is None:
        raise RuntimeError(f"cannot read {sample.image_path}")
    photo = np.asarray(read, dtype=np.uint8)
    rng = np.random.default_rng(_seed(sample.name))
    base = placement(sample.landmarks, face_iod)
    encoded, truth = [], []
    for k in range(frames):
        transform = base if still else compose_affine(path_motion(k / frames), base)
        encoded.append(render(photo, transform, rng, noise, quality))
        truth.append(apply_affine(transform, sample.landmarks))
    kind = "still" if still else "path"
    return Video(f"{sample.name} ({kind})", encoded, truth)


def _seed(name: str) -> int:
    """A seed of its own for each photo, the same on every run."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 2**32


def nme(points: FloatArray, truth: FloatArray) -> float:
    """Mean landmark error / the truth's inter-ocular distance."""
    return float(np.linalg.norm(points - truth, axis=1).mean() / inter_ocular_distance(truth))


def closest(alignment: Alignment | None, truth: FloatArray) -> FloatArray | None:
    """The answered face nearest the true one (a photo may hold other faces), or None."""
    if alignment is None or not alignment.faces:
        return None
    return min((f.landmarks for f in alignment.faces), key=lambda p: nme(p, truth))


@dataclass
class Run:
    """One way of aligning a video: the landmarks per frame (None: no face) and the time."""

    landmarks: list[FloatArray | None]
    seconds: float
    errors: list[str] = field(default_factory=list)


def run_align(url: str, video: Video) -> Run:
    """Every frame to ``/align`` without boxes, one request at a time."""
    found: list[FloatArray | None] = []
    errors = []
    started = time.perf_counter()
    with Client(url, retries=0) as client:
        for frame, truth in zip(video.frames, video.truth, strict=True):
            try:
                found.append(closest(client.align(frame), truth))
            except ServiceError as e:
                errors.append(e.error)
                found.append(None)
    return Run(found, time.perf_counter() - started, errors)


def run_stream(url: str, video: Video, smoothing: bool, window: int) -> Run:
    """Every frame through one stream, ``window`` in flight."""
    found: list[FloatArray | None] = []
    errors = []
    started = time.perf_counter()
    with open_stream(url, smoothing=smoothing) as stream:
        for index, answer in stream.align_all(
            range(len(video.frames)), video.frames.__getitem__, window
        ):
            if answer.error is not None:
                errors.append(answer.error)
            found.append(closest(answer.alignment, video.truth[index]))
    return Run(found, time.perf_counter() - started, errors)


def accuracy(runs: Sequence[tuple[Video, Run]]) -> dict[str, float | int]:
    """NME (%) over the frames with a face, and how many frames had none."""
    errors = [
        nme(points, truth)
        for video, run in runs
        for points, truth in zip(run.landmarks, video.truth, strict=True)
        if points is not None
    ]
    frames = sum(len(video.frames) for video, _ in runs)
    seconds = sum(run.seconds for _, run in runs)
    return {
        "nme_percent": round(100.0 * float(np.mean(errors)), 3) if errors else float("nan"),
        "frames": frames,
        "missed": frames - len(errors),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else float("nan"),
    }


def jitter(video: Video, run: Run) -> float:
    """Mean frame-to-frame landmark motion, % of the inter-ocular distance (frames with a face
    before and after)."""
    moves = [
        float(np.linalg.norm(b - a, axis=1).mean() / inter_ocular_distance(truth))
        for a, b, truth in zip(run.landmarks, run.landmarks[1:], video.truth[1:], strict=False)
        if a is not None and b is not None
    ]
    return round(100.0 * float(np.mean(moves)), 3) if moves else float("nan")


@dataclass
class Throughput:
    """Frames/s through the stream and through ``/align``, and the frames refused (by reason)."""

    stream_frames_per_s: float
    align_frames_per_s: float
    stream_errors: dict[str, int] = field(default_factory=dict)
    align_errors: dict[str, int] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return round(_ratio(self.stream_frames_per_s, self.align_frames_per_s), 2)

    def summary(self) -> dict[str, object]:
        return {**asdict(self), "speedup": self.speedup}


def throughput(
    url: str, videos: Sequence[Video], clients: int, frames: int, window: int
) -> Throughput:
    """Frames/s of ``clients`` concurrent clients, each its own video's first ``frames``
    frames: through the stream, then through ``/align``."""
    chosen = [videos[i % len(videos)] for i in range(clients)]
    clipped = [Video(v.name, v.frames[:frames], v.truth[:frames]) for v in chosen]
    rates: dict[str, float] = {}
    errors: dict[str, dict[str, int]] = {}
    for name, work in (
        ("stream", lambda v: run_stream(url, v, True, window)),
        ("align", lambda v: run_align(url, v)),
    ):
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            runs = list(pool.map(work, clipped))
        seconds = time.perf_counter() - started
        answered = sum(len(v.frames) - len(r.errors) for v, r in zip(clipped, runs, strict=True))
        rates[name] = round(answered / seconds, 2)
        errors[name] = dict(Counter(e for r in runs for e in r.errors))
    return Throughput(rates["stream"], rates["align"], errors["stream"], errors["align"])


def stream_counts(url: str) -> dict[str, float]:
    """The service's stream frames by source and its re-detections by reason, all runs."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=30.0).text
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("dan_stream_frames", "dan_stream_redetections"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    label = next(iter(sample.labels.values()))
                    counts[f"{family.name.removeprefix('dan_stream_')}.{label}"] = sample.value
    return counts


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the 300-W folder")
    p.add_argument("--model", type=Path, default=REPO_ROOT / "model" / "dan-300w.onnx")
    p.add_argument("--url", default=None, help="a running service instead of starting one")
    p.add_argument(
        "--photos", type=positive_int, default=2, help="smooth-path videos (one photo each)"
    )
    p.add_argument("--frames", type=positive_int, default=100, help="frames per video")
    p.add_argument(
        "--face-iod", type=positive_float, default=90.0, help="the face's size on the canvas"
    )
    p.add_argument("--noise", type=non_negative_float, default=4.0, help="noise SD, grey levels")
    p.add_argument(
        "--jpeg-quality", type=jpeg_quality, default=80, help="JPEG quality of each frame (1-100)"
    )
    p.add_argument("--window", type=positive_int, default=4, help="frames in flight per stream")
    p.add_argument(
        "--clients",
        type=positive_ints,
        default=(8,),
        help="concurrent clients of the throughput run (comma-separated: one run each)",
    )
    p.add_argument(
        "--throughput-frames",
        type=positive_int,
        default=24,
        help="frames per client, throughput run",
    )
    p.add_argument(
        "--threads", type=non_negative_int, default=2, help="DAN_CPU_THREADS of the service"
    )
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    faces = sorted(boxed_faces(args.data_root, SPLITS["common"]), key=lambda s: s.name)
    chosen = faces[:: max(1, len(faces) // max(args.photos, 1))][: args.photos]
    options = {"face_iod": args.face_iod, "noise": args.noise, "quality": args.jpeg_quality}
    paths = [make_video(s, args.frames, still=False, **options) for s in chosen]
    still = make_video(chosen[0], args.frames, still=True, **options)
    settings = {
        "model_path": args.model,
        "cpu_threads": args.threads,
        "decode_threads": 2,
        "max_batch_size": 8,
        "detector": "centerface",
        "log_level": "warning",
    }
    results: dict[str, object] = {"videos": [v.name for v in paths], "still": still.name}
    with service_url(args.url, settings) as url:
        run_align(url, Video("warm-up", paths[0].frames[:2], paths[0].truth[:2]))
        detect = [(v, run_align(url, v)) for v in paths]
        track = [(v, run_stream(url, v, False, args.window)) for v in paths]
        smooth = [(v, run_stream(url, v, True, args.window)) for v in paths]
        results["path"] = {
            "align_per_frame": accuracy(detect),
            "stream_tracking": accuracy(track),
            "stream_tracking_smoothed": accuracy(smooth),
        }
        still_runs = {
            "align_per_frame": run_align(url, still),
            "stream_tracking": run_stream(url, still, False, args.window),
            "stream_tracking_smoothed": run_stream(url, still, True, args.window),
        }
        results["still"] = {
            name: {"jitter_percent": jitter(still, run), **accuracy([(still, run)])}
            for name, run in still_runs.items()
        }
        one = Throughput(  # one client: the runs above
            float(accuracy(smooth)["frames_per_s"]), float(accuracy(detect)["frames_per_s"])
        )
        levels = {"1": one}
        for clients in args.clients:
            levels[str(clients)] = throughput(
                url, paths, clients, args.throughput_frames, args.window
            )
        results["service_counts"] = stream_counts(url)
    path_results = results["path"]
    still_results = results["still"]
    assert isinstance(path_results, dict) and isinstance(still_results, dict)
    results["throughput"] = {k: v.summary() for k, v in levels.items()}
    gap = (
        path_results["stream_tracking"]["nme_percent"]
        - path_results["align_per_frame"]["nme_percent"]
    )
    ratio = _ratio(
        still_results["stream_tracking_smoothed"]["jitter_percent"],
        still_results["stream_tracking"]["jitter_percent"],
    )
    results["targets"] = {
        "tracking_nme_gap_points": round(gap, 3),
        "tracking_nme_met": gap <= NME_MARGIN_POINTS,
        "jitter_ratio": round(ratio, 3),
        "jitter_met": ratio <= JITTER_RATIO,
        "speedups": {k: v.speedup for k, v in levels.items()},
        "speedup_met": all(v.speedup >= SPEEDUP for v in levels.values()),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(_table(results), file=sys.stderr)
    return 0


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0 (a still face that never moved, a run that answered nothing)."""
    return a / b if b else float("nan")


def _table(results: dict[str, object]) -> str:
    path = results["path"]
    still = results["still"]
    levels = results["throughput"]
    assert isinstance(path, dict) and isinstance(still, dict) and isinstance(levels, dict)
    rows = [
        "| | path NME % | path frames missed | still NME % | still jitter % |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, label in (
        ("align_per_frame", "/align, detector on every frame"),
        ("stream_tracking", "stream, tracking"),
        ("stream_tracking_smoothed", "stream, tracking + smoothing"),
    ):
        rows.append(
            f"| {label} | {path[name]['nme_percent']} | {path[name]['missed']} | "
            f"{still[name]['nme_percent']} | {still[name]['jitter_percent']} |"
        )
    rows += [
        "",
        "| clients | stream frames/s | /align frames/s | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    for clients, level in levels.items():
        rows.append(
            f"| {clients} | {level['stream_frames_per_s']} | {level['align_frames_per_s']} | "
            f"{level['speedup']}x |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
