"""Load generator for the align service: faces/s and latency against the raw engine, same run.

    python -m bench.load --model model/dan-300w.onnx

1. Raw engine: the same ONNX file through ``service.engine.Engine`` with the
   same provider, threads and batch size as the server: single-face latency
   (median of batch-1 runs) and throughput (full batches, faces/s).
2. Starts ``python -m service`` on a loopback port (or uses ``--url``), then
   runs closed-loop clients (keep-alive HTTP/1.1, one real 300-W test image and
   its detector box per request) at each ``--levels`` concurrency: faces/s and
   p50 / p95 / p99 latency of the answers. ``--large-every K`` makes every K-th
   image a scaled-up one (``--large-side`` px): a mix of cheap and expensive uploads.
3. Overload: an open-loop arrival rate of ``--overload`` x the best faces/s of
   step 2 for ``--overload-duration`` s: how many succeed, how many get an
   explicit 503, anything else (should be none), and the p99 of the accepted.

The issue's targets on a 2-core machine are checked at the end: saturation
>= 85% of the raw engine throughput; concurrency-1 median <= single-face engine
latency + 15 ms; under overload only 200 or 503, with a bounded p99.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

from bench.samples import boxed_faces
from bench.serving import service_url
from training.arguments import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    positive_ints,
)
from training.dataset import SPLITS, Sample
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

if TYPE_CHECKING:
    from service.config import Provider

BOUNDARY = "dan-bench-9f8e7d"


@dataclass(frozen=True)
class Payload:
    """One ready-to-send HTTP request: an image and its box, multipart-encoded."""

    name: str
    request: bytes


@dataclass
class LevelResult:
    name: str
    concurrency: int
    seconds: float
    ok: int = 0
    rejected: int = 0  # 503
    other: int = 0  # anything else, transport errors included
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "503", "504", "OSError", ...

    def record(self, outcome: str, latency_ms: float) -> None:
        """One answer (an HTTP status) or failure (an exception's or the client's name)."""
        self.outcomes[outcome] += 1
        if outcome == "200":
            self.ok += 1
            self.latencies_ms.append(latency_ms)
        elif outcome == "503":
            self.rejected += 1
        else:
            self.other += 1

    @property
    def faces_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "ok": self.ok,
            "rejected_503": self.rejected,
            "other": self.other,
            "other_kinds": " ".join(
                f"{k}x{n}" for k, n in sorted(self.outcomes.items()) if k not in ("200", "503")
            )
            or "-",
            "faces_per_s": round(self.faces_per_s, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


def test_faces(data_root: Path, count: int) -> list[Sample]:
    """The first ``count`` common-test faces with a detector box, by name (helen/testset
    before lfpw/testset: the images every published number of this benchmark was measured on)."""
    return sorted(boxed_faces(data_root, SPLITS["common"]), key=lambda s: s.name)[:count]


def load_payloads(
    data_root: Path,
    count: int,
    port: int,
    large_every: int = 0,
    large_side: int = 4000,
    boxes: bool = True,
) -> list[Payload]:
    """``count`` common-test images with their detector boxes, as requests; with
    ``large_every`` = K, every K-th is its image scaled up to ``large_side`` pixels on its longer
    side (JPEG, its box scaled with it): a mix of cheap and expensive uploads. ``boxes`` False:
    the same images without boxes (the service detects the faces)."""
    payloads = []
    for k, s in enumerate(test_faces(data_root, count)):
        image, box = s.image_path.read_bytes(), s.box("file").tolist()
        name = s.name
        if large_every > 0 and k % large_every == large_every - 1:
            image, box = enlarged(image, box, large_side)
            name = f"{s.name}@{large_side}"
        payloads.append(Payload(name, encode_request(image, [box] if boxes else None, port)))
    return payloads


def enlarged(image: bytes, box: list[float], side: int) -> tuple[bytes, list[float]]:
    """The image scaled so that its longer side is ``side`` pixels (JPEG), and the box with it
    (pixel centres: x' = (x + 0.5) * f - 0.5)."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        picture = opened.convert("RGB")
    factor = side / max(picture.size)
    size = (round(picture.width * factor), round(picture.height * factor))
    buffer = io.BytesIO()
    picture.resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), [(v + 0.5) * factor - 0.5 for v in box]


def encode_request(image: bytes, boxes: list[list[float]] | None, port: int) -> bytes:
    """A multipart POST /align of the image and its boxes (None: no boxes field)."""
    box_part = (
        []
        if boxes is None
        else [
            f"\r\n--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="boxes"\r\n\r\n',
            json.dumps(boxes).encode(),
        ]
    )
    body = b"".join(
        [
            f"--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="image"; filename="face.jpg"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            image,
            *box_part,
            f"\r\n--{BOUNDARY}--\r\n".encode(),
        ]
    )
    head = (
        f"POST /align HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    """A keep-alive HTTP/1.1 connection that sends prepared requests and reads the answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        reused = self.writer is not None and not self.writer.is_closing()
        try:
            return await self._request(data)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            self.close()  # the server closed an idle keep-alive connection: once more, anew
            return await self._request(data)

    async def _request(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.lower() == "content-length":
                length = int(value)
            elif key.lower() == "connection" and value.strip().lower() == "close":
                close = True
        body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


async def send(connection: Connection, payload: Payload) -> str:
    """The answer's HTTP status, or the name of the exception that came instead."""
    try:
        status, _ = await connection.request(payload.request)
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        connection.close()
        return type(error).__name__
    return str(status)


async def closed_loop(
    host: str,
    port: int,
    payloads: Sequence[Payload],
    concurrency: int,
    seconds: float,
    warmup_s: float,
) -> LevelResult:
    """``concurrency`` clients, each sending its next request when the last one is answered."""
    result = LevelResult(f"c={concurrency}", concurrency, seconds)
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup_s
    end = start + seconds

    async def client(index: int) -> None:
        connection = Connection(host, port)
        i = index
        while loop.time() < end:
            payload = payloads[i % len(payloads)]
            i += concurrency
            sent = loop.time()
            outcome = await send(connection, payload)
            done = loop.time()
            if sent < start or done > end:
                continue  # warm-up, or past the measured window
            result.record(outcome, (done - sent) * 1000.0)
        connection.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return result


async def open_loop(
    host: str,
    port: int,
    payloads: Sequence[Payload],
    rate: float,
    seconds: float,
    max_connections: int,
) -> LevelResult:
    """Requests arriving at ``rate`` per second whatever the answers (evenly spaced)."""
    result = LevelResult(f"open {rate:.1f}/s", 0, seconds)
    idle: list[Connection] = []
    opened = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: set[asyncio.Task[None]] = set()

    async def one(payload: Payload) -> None:
        connection = idle.pop() if idle else Connection(host, port)
        sent = loop.time()
        outcome = await send(connection, payload)
        idle.append(connection)
        result.record(outcome, (loop.time() - sent) * 1000.0)

    n = int(rate * seconds)
    for k in range(n):
        await asyncio.sleep(max(0.0, start + k / rate - loop.time()))
        if len(tasks) >= max_connections:
            result.record("client-cap", 0.0)  # the client could not keep up: counted, never hidden
            continue
        task = asyncio.ensure_future(one(payloads[k % len(payloads)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        opened = max(opened, len(tasks))
    if tasks:
        await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    result.concurrency = opened
    for connection in idle:
        connection.close()
    return result


@dataclass(frozen=True)
class EngineResult:
    provider: str
    max_batch_size: int
    single_face_ms: float  # median batch-1 latency
    faces_per_s: float  # full batches
    # This process's CPU time per face in full batches, all threads: what a machine shared with
    # other work leaves nearly alone (wall-clock throughput there is the CPU share's)
    cpu_ms_per_face: float = float("nan")


def measure_engine(
    model: Path,
    data_root: Path,
    seconds: float,
    *,
    provider: Provider = "cpu",
    cpu_threads: int = 0,
    max_batch_size: int | None = None,
    images: int = 32,
    mirror_average: bool = False,
) -> EngineResult:
    """The raw engine on real crops: no HTTP, no decoding, no queue (``mirror_average``: as the
    service runs it with ``DAN_MIRROR_AVERAGE``, each face also mirrored)."""
    from model.crop import crop_face
    from service.config import Settings
    from service.engine import Engine
    from training.dataset import read_gray

    settings = Settings(
        model_path=model,
        provider=provider,
        cpu_threads=cpu_threads,
        max_batch_size=max_batch_size,
        mirror_average=mirror_average,
    )
    engine = Engine(settings)
    crops = [
        crop_face(
            read_gray(s.image_path), s.box("file"), engine.info.mean_shape, engine.info.input_size
        ).pixels
        for s in test_faces(data_root, images)
    ]
    engine.warm_up(runs=3)
    singles: list[float] = []
    end = time.perf_counter() + seconds / 2
    i = 0
    while time.perf_counter() < end or len(singles) < 5:
        started = time.perf_counter()
        engine.run([crops[i % len(crops)]])
        singles.append(time.perf_counter() - started)
        i += 1
    batch = [crops[k % len(crops)] for k in range(engine.max_batch_size)]
    faces = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    while time.perf_counter() - started < seconds / 2 or faces < 2 * engine.max_batch_size:
        engine.run(batch)
        faces += len(batch)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return EngineResult(
        engine.provider,
        engine.max_batch_size,
        statistics.median(singles) * 1000.0,
        faces / elapsed,
        1000.0 * cpu / faces,
    )


def service_settings(args: argparse.Namespace) -> dict[str, object]:
    """The server's DAN_* settings: the engine's, the batching flags and any ``--set``."""
    settings: dict[str, object] = {
        "model_path": args.model,
        "provider": args.provider,
        "cpu_threads": args.cpu_threads,
        "decode_threads": args.decode_threads,
        "max_wait_ms": args.max_wait_ms,
        "log_level": "warning",
    }
    if args.max_batch_size is not None:
        settings["max_batch_size"] = args.max_batch_size
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key.lower()] = value
    return settings


def mirror_average_of(settings: dict[str, object]) -> bool:
    """Whether ``settings`` (``service_settings``) turn DAN_MIRROR_AVERAGE on, read as the
    service reads it."""
    from pydantic import TypeAdapter

    return TypeAdapter(bool).validate_python(settings.get("mirror_average", False))


def table(rows: Sequence[dict[str, float | int | str]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


async def run_load(
    args: argparse.Namespace, host: str, port: int, payloads: Sequence[Payload]
) -> tuple[list[LevelResult], LevelResult]:
    levels = []
    for concurrency in args.levels:
        result = await closed_loop(host, port, payloads, concurrency, args.duration, args.warmup)
        print(
            f"  c={concurrency}: {result.faces_per_s:.1f} faces/s, p50 {result.percentile(50):.1f} ms"
        )
        levels.append(result)
    best = max(levels, key=lambda r: r.faces_per_s)
    rate = args.overload * best.faces_per_s
    overload = await open_loop(
        host, port, payloads, rate, args.overload_duration, args.max_connections
    )
    overload.name = f"{args.overload:g}x overload ({rate:.1f} req/s offered)"
    return levels, overload


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--model", type=Path, default=REPO_ROOT / "model" / "dan-300w.onnx", help="ONNX model"
    )
    p.add_argument(
        "--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W folder (boxes.csv)"
    )
    p.add_argument(
        "--images", type=positive_int, default=20, help="distinct test images to cycle through"
    )
    p.add_argument("--url", default=None, help="use a running service (http://host:port) instead")
    p.add_argument(
        "--provider", default="cpu", help="cpu, cuda, tensorrt or auto (engine and server)"
    )
    p.add_argument(
        "--cpu-threads",
        type=non_negative_int,
        default=0,
        help="CPU provider threads (0 = all cores)",
    )
    p.add_argument(
        "--max-batch-size", type=positive_int, default=None, help="default: the service's"
    )
    p.add_argument(
        "--max-wait-ms", type=non_negative_float, default=2.0, help="server's DAN_MAX_WAIT_MS"
    )
    p.add_argument(
        "--decode-threads", type=positive_int, default=2, help="server's DAN_DECODE_THREADS"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="any other DAN_ setting"
    )
    p.add_argument(
        "--levels",
        type=positive_ints,
        default=[1, 2, 4, 8, 16],
        help="comma-separated concurrency levels",
    )
    p.add_argument(
        "--duration", type=positive_float, default=10.0, help="measured seconds per level"
    )
    p.add_argument(
        "--warmup",
        type=non_negative_float,
        default=1.0,
        help="unmeasured seconds before each level",
    )
    p.add_argument(
        "--engine-seconds", type=positive_float, default=10.0, help="seconds of raw-engine runs"
    )
    p.add_argument(
        "--overload", type=positive_float, default=4.0, help="offered load / best faces/s"
    )
    p.add_argument(
        "--overload-duration", type=positive_float, default=10.0, help="seconds of overload"
    )
    p.add_argument(
        "--max-connections", type=positive_int, default=1000, help="client connections at most"
    )
    p.add_argument(
        "--large-every",
        type=non_negative_int,
        default=0,
        help="every K-th image scaled up to --large-side (a mix of upload sizes); 0: none",
    )
    p.add_argument(
        "--large-side",
        type=positive_int,
        default=4000,
        help="longer side of the scaled-up images (px)",
    )
    p.add_argument(
        "--no-boxes",
        action="store_true",
        help="send the images without boxes (the service's face detection runs)",
    )
    p.add_argument("--json-out", type=Path, default=None, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    args.model = args.model.resolve()
    if not args.model.is_file():
        raise SystemExit(f"no model at {args.model} (--model)")
    print(f"model {args.model}; data {args.data_root}")
    print("raw engine ...")
    served = service_settings(args)
    engine = measure_engine(
        args.model,
        args.data_root,
        args.engine_seconds,
        provider=args.provider,
        cpu_threads=args.cpu_threads,
        max_batch_size=args.max_batch_size,
        images=args.images,
        # The engine runs as the server will: --set mirror_average=true doubles both.
        mirror_average=mirror_average_of(served),
    )
    print(
        f"  {engine.provider}, batch {engine.max_batch_size}: single face {engine.single_face_ms:.2f} ms, "
        f"{engine.faces_per_s:.1f} faces/s at full batches"
    )
    print("python -m service ..." if args.url is None else f"service at {args.url} ...")
    with service_url(args.url, served) as url:
        if httpx.get(f"{url}/health/ready", timeout=10).status_code != 200:
            raise SystemExit(f"{url} is not ready")
        host, _, port_text = url.removeprefix("http://").rstrip("/").partition(":")
        port = int(port_text or 80)
        payloads = load_payloads(
            args.data_root,
            args.images,
            port,
            args.large_every,
            args.large_side,
            boxes=not args.no_boxes,
        )
        levels, overload = asyncio.run(run_load(args, host, port, payloads))
    rows = [r.summary() for r in [*levels, overload]]
    print()
    print(
        f"raw engine ({engine.provider}, batch {engine.max_batch_size}): "
        f"{engine.faces_per_s:.1f} faces/s; single face {engine.single_face_ms:.2f} ms"
    )
    print(table(rows))
    best = max(levels, key=lambda r: r.faces_per_s)
    one = next((r for r in levels if r.concurrency == 1), None)
    ratio = best.faces_per_s / engine.faces_per_s
    print()
    print(
        f"saturation: {best.faces_per_s:.1f} / {engine.faces_per_s:.1f} = {ratio:.0%} of the raw engine (target >= 85%)"
    )
    if one is not None:
        limit = engine.single_face_ms + 15.0
        print(f"concurrency 1: median {one.percentile(50):.1f} ms (target <= {limit:.1f} ms)")
    print(
        f"overload: {overload.ok} answered, {overload.rejected} got 503, {overload.other} other "
        f"({overload.summary()['other_kinds']}; target 0); "
        f"p99 of the answered {overload.percentile(99):.0f} ms"
    )
    if args.json_out is not None:
        args.json_out.write_text(
            json.dumps(
                {
                    "engine": asdict(engine),
                    "levels": rows,
                    "argv": sys.argv[1:] if argv is None else argv,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
