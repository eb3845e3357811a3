"""Following real faces through ``GET /align/stream``: the released model and CenterFace on a
real server, real 300-W faces (skipped without them). A moving face keeps its track id and is
followed from the previous frame's landmarks, the detector checking on it every few frames;
a face that leaves the frame and comes back is a new track."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from raw_http import metric
from service_support import serving
from stream_support import canvas_with, encoded, open_stream, receive, send_options

from bench.serving import ServiceProcess
from bench.stream import Video, make_video, nme
from training.dataset import Sample, read_gray

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[2]
MAX_NME = 0.10  # of the inter-ocular distance, each frame (the model's median is under 0.04)


@pytest.fixture(scope="module")
def tracking_service(
    tmp_path_factory: pytest.TempPathFactory, data_root: Path
) -> Iterator[ServiceProcess]:
    """The released model with CenterFace (small batches, one warm-up run: a quick start)."""
    settings = {
        "model_path": REPO / "model" / "dan-300w.onnx",
        "detector": "centerface",
        "max_batch_size": 4,
        "warmup_runs": 1,
    }
    with serving(tmp_path_factory.mktemp("tracking-service"), **settings) as running:
        yield running


def test_a_moving_face_is_followed_and_checked_by_the_detector(
    tracking_service: ServiceProcess, real_test_faces: list[Sample]
) -> None:
    # The first 12 frames of bench.stream's smooth path (100 frames): up to 9 px a frame.
    whole = make_video(real_test_faces[0], 100, still=False, face_iod=90.0, noise=4.0, quality=80)
    video = Video(whole.name, whole.frames[:12], whole.truth[:12])
    checks = metric(tracking_service.client, "dan_stream_redetections_total", reason="interval")
    with open_stream(tracking_service) as ws:
        send_options(ws, smoothing=False, redetect_every=5)
        for frame in video.frames:
            ws.send(frame)
        answers = [receive(ws) for _ in video.frames]
    sources = [[f["box_source"] for f in a["faces"]] for a in answers]
    assert sources[0] == ["detector"]
    assert all(s == ["track"] for s in sources[1:]), sources  # detection frames too: kept
    assert {f["track_id"] for a in answers for f in a["faces"]} == {1}
    for answer, truth in zip(answers, video.truth, strict=True):
        assert nme(np.asarray(answer["faces"][0]["landmarks"]), truth) < MAX_NME
    # Frames 5 and 10 ran the detector beside the tracking (it found the face where it was).
    after = metric(tracking_service.client, "dan_stream_redetections_total", reason="interval")
    assert after == checks + 2
    assert all(a["faces"][0]["timings"]["detect_ms"] is None for a in answers[1:5])
    assert answers[5]["faces"][0]["timings"]["detect_ms"] is not None


def test_a_face_that_leaves_and_comes_back_is_a_new_track(
    tracking_service: ServiceProcess, real_test_faces: list[Sample]
) -> None:
    gray = read_gray(real_test_faces[0].image_path)
    with_face = encoded(canvas_with(gray, 120, 40))
    without = encoded(canvas_with(gray, 2000, 2000))  # the canvas alone
    frames = [with_face, with_face, without, without, with_face]
    with open_stream(tracking_service) as ws:
        send_options(ws, redetect_every=100)  # no periodic detection: the fallback notices
        for frame in frames:
            ws.send(frame)
        answers = [receive(ws) for _ in frames]
    faces = [a["faces"] for a in answers]
    assert [len(f) for f in faces] == [1, 1, 0, 0, 1]
    assert [faces[0][0]["box_source"], faces[1][0]["box_source"]] == ["detector", "track"]
    first, back = faces[0][0]["track_id"], faces[4][0]["track_id"]
    assert faces[1][0]["track_id"] == first
    assert faces[4][0]["box_source"] == "detector"
    assert back != first
