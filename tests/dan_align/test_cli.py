"""The ``dan-align`` command against a real service: output, drawings, videos, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from client_support import API_KEY, Service, free_port

from dan_align import Client, cli, drawing

pytestmark = pytest.mark.process  # a real python -m service (conftest.align_service)
REPO = Path(__file__).resolve().parents[2]
TOLERANCE_PX = 0.01


def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m dan_align ARGS`` (what the ``dan-align`` script runs), no DAN* variables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DAN")}
    return subprocess.run(
        [sys.executable, "-m", "dan_align", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("dan-align")
    assert script.is_file(), "pip install -e '.[cpu]' installs the dan-align command"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "exit codes" in done.stdout
    for command in ("align", "video", "serve"):
        assert command in done.stdout


def test_align_prints_the_faces(align_service: Service, photos: list[Path]) -> None:
    done = run("align", str(photos[0]), "--url", align_service.url)
    assert done.returncode == cli.EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{photos[0]}: 1 face, 384x384, dan-300w")
    assert lines[1].startswith("  face 1: box [") and "(detector, score" in lines[1]


def test_align_json_is_the_services_answer(align_service: Service, photos: list[Path]) -> None:
    done = run("align", *map(str, photos), "--url", align_service.url, "--json")
    assert done.returncode == cli.EXIT_OK, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["photo"] for r in records] == [str(p) for p in photos]
    with Client(align_service.url) as client:
        for photo, record in zip(photos, records, strict=True):
            expected = client.align(photo).faces[0].landmarks
            np.testing.assert_allclose(record["faces"][0]["landmarks"], expected, atol=TOLERANCE_PX)


def test_align_draws_the_landmarks_on_the_photo(
    align_service: Service, photos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "drawn.png"
    box = "[[124.6, 126.2, 255.9, 251.4]]"
    done = run(
        "align", str(photos[0]), "--url", align_service.url, "--boxes", box, "--draw", str(out)
    )
    assert done.returncode == cli.EXIT_OK, done.stderr
    drawn = cv2.imread(str(out))
    original = cv2.imread(str(photos[0]))
    assert drawn.shape == original.shape
    with Client(align_service.url) as client:
        points = client.align(photos[0], boxes=json.loads(box)).faces[0].landmarks
    # The inner lip is drawn last: its points are in its colour exactly where they are.
    colour = drawing.bgr(next(r.colour for r in drawing.REGIONS if r.name == "inner_lip"))
    for index in (62, 66):
        x, y = np.round(points[index]).astype(int)
        assert tuple(drawn[y, x]) == colour
    assert (np.abs(drawn.astype(int) - original).sum(axis=2) > 0).mean() > 0.01


def test_several_photos_are_drawn_into_a_folder(
    align_service: Service, photos: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "drawn"
    done = run("align", *map(str, photos), "--url", align_service.url, "--draw", str(folder))
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{p.stem}.png" for p in photos)


def test_a_photo_without_a_face_exits_1(align_service: Service, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 127, np.uint8))
    done = run("align", str(blank), "--url", align_service.url)
    assert done.returncode == cli.EXIT_NO_FACE, done.stderr
    assert done.stdout.startswith(f"{blank}: 0 faces")


def test_a_missing_photo_exits_2_before_anything_is_sent(tmp_path: Path) -> None:
    done = run("align", str(tmp_path / "nowhere.jpg"), "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == cli.EXIT_USAGE
    assert "cannot read" in done.stderr and "nowhere.jpg" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("boxes", "words"),
    [
        ("[[1, 2, 3", "is not JSON"),
        ("[[1, 2, 3]]", "expected boxes"),
        ("@/nowhere.json", "cannot read"),
    ],
)
def test_bad_boxes_exit_2(photos: list[Path], boxes: str, words: str) -> None:
    done = run("align", str(photos[0]), "--boxes", boxes)
    assert done.returncode == cli.EXIT_USAGE and words in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--timeout", "0", "argument --timeout: expected a number of seconds > 0, got '0'"),
        ("--timeout", "soon", "argument --timeout: expected a number of seconds > 0, got 'soon'"),
        ("--retries", "-1", "argument --retries: expected a whole number >= 0, got '-1'"),
        (
            "--concurrency",
            "many",
            "argument --concurrency: expected a whole number >= 1, got 'many'",
        ),
    ],
)
def test_flags_out_of_range_exit_2_with_what_was_expected(
    photos: list[Path], flag: str, value: str, words: str
) -> None:
    done = run("align", str(photos[0]), flag, value)
    assert done.returncode == cli.EXIT_USAGE and words in done.stderr, done.stderr


def test_a_refused_photo_exits_3_with_the_services_words(
    align_service: Service, photos: list[Path], tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    detail = align_service.client.post("/align", files={"image": ("x", b"not a photo")}).json()
    done = run("align", str(photos[0]), str(text), "--url", align_service.url, "--json")
    assert done.returncode == cli.EXIT_SERVICE_ERROR
    assert f"{text}: the service answered 400 not_an_image: {detail['detail']}" in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records[0]["faces"]) == 1
    assert records[1] == {
        "photo": str(text),
        "status": 400,
        "error": "not_an_image",
        "detail": detail["detail"],
    }


def test_an_unreachable_service_exits_4(photos: list[Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run("align", str(photos[0]), "--url", url)
    assert done.returncode == cli.EXIT_UNREACHABLE
    assert f"could not reach the service at {url}" in done.stderr
    assert "dan-align serve" in done.stderr and "Traceback" not in done.stderr


def test_the_api_key_is_sent(keyed_service: Service, photos: list[Path]) -> None:
    done = run("align", str(photos[0]), "--url", keyed_service.url, "--api-key", API_KEY)
    assert done.returncode == cli.EXIT_OK, done.stderr
    done = run("align", str(photos[0]), "--url", keyed_service.url)
    assert done.returncode == cli.EXIT_SERVICE_ERROR
    assert "the service answered 401 unauthorized" in done.stderr


def write_video(path: Path, photo: Path, frames: int) -> None:
    image = cv2.imread(str(photo))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, image.shape[1::-1])
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.roll(image, 3 * i, axis=1))  # the face moves right
    writer.release()


def test_video_writes_a_line_per_frame_and_the_drawn_video(
    align_service: Service, photos: list[Path], tmp_path: Path
) -> None:
    source, out, drawn = tmp_path / "clip.mp4", tmp_path / "landmarks.jsonl", tmp_path / "drawn.mp4"
    write_video(source, photos[0], 5)
    done = run(
        "video",
        *(str(source), "--out", str(out), "--draw", str(drawn), "--url", align_service.url),
        "--no-smoothing",  # the landmarks as the model finds them: no lag to allow for
    )
    assert done.returncode == cli.EXIT_OK, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["time_s"] for r in records] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert all(len(r["faces"]) == 1 for r in records)
    # Through the stream: the face is followed (one track), after the first frame's detection.
    assert {r["faces"][0]["track_id"] for r in records} == {1}
    assert [r["faces"][0]["box_source"] for r in records] == ["detector"] + ["track"] * 4
    xs = [np.mean(np.asarray(r["faces"][0]["landmarks"])[:, 0]) for r in records]
    assert xs[-1] - xs[0] == pytest.approx(12.0, abs=3.0), "the landmarks follow the face"
    capture = cv2.VideoCapture(str(drawn))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    assert "5 frames sent through one stream, 5 answered (5 faces), 0 refused" in done.stderr


def test_video_through_align_one_request_a_frame(
    align_service: Service, photos: list[Path], tmp_path: Path
) -> None:
    source, out = tmp_path / "clip.mp4", tmp_path / "landmarks.jsonl"
    write_video(source, photos[0], 3)
    done = run(
        "video", str(source), "--out", str(out), "--via", "align", "--url", align_service.url
    )
    assert done.returncode == cli.EXIT_OK, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["faces"][0]["box_source"] for r in records] == ["detector"] * 3
    assert all("track_id" not in r["faces"][0] for r in records)
    assert "3 frames sent through /align, 3 answered" in done.stderr


def test_video_every_and_max_frames(
    align_service: Service, photos: list[Path], tmp_path: Path
) -> None:
    source, out = tmp_path / "clip.mp4", tmp_path / "landmarks.jsonl"
    write_video(source, photos[1], 7)
    done = run("video", str(source), "--out", str(out), "--every", "3", "--url", align_service.url)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 3, 6]
    done = run(
        "video", str(source), "--out", str(out), "--max-frames", "2", "--url", align_service.url
    )
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 1]


def test_video_that_cannot_be_read_exits_2(tmp_path: Path) -> None:
    not_video = tmp_path / "clip.mp4"
    not_video.write_text("not a video")
    for source in (tmp_path / "missing.mp4", not_video):
        done = run("video", str(source), "--out", str(tmp_path / "x.jsonl"))
        assert done.returncode == cli.EXIT_USAGE, done.stderr
        assert str(source) in done.stderr and "Traceback" not in done.stderr


def test_video_help_says_frames_go_over_a_stream() -> None:
    done = run("video", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "send its frames over one stream (GET /align/stream" in text
    assert "A service without the stream endpoint gets each frame as a POST /align" in text


def test_serve_is_python_m_service() -> None:
    done = run("serve", "--port", "0", timeout=60)
    assert done.returncode == 2, done.stderr  # python -m service's code for invalid settings
    assert "DAN_PORT" in done.stderr
