"""``bench.stream``: its test videos and their ground truth, and a smoke run end to end (the
code paths, not the numbers: the tiny model, real or synthetic faces)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.stream import CANVAS, Run, Video, jitter, main, make_video, nme
from model.landmarks import inter_ocular_distance
from training.dataset import Sample


def test_the_videos_and_their_truth(test_faces: list[Sample]) -> None:
    still = make_video(test_faces[0], 3, still=True, face_iod=90.0, noise=4.0, quality=80)
    moving = make_video(test_faces[0], 5, still=False, face_iod=90.0, noise=4.0, quality=80)
    for video in (still, moving):
        frame = cv2.imdecode(np.frombuffer(video.frames[0], np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (CANVAS[1], CANVAS[0], 3)
        assert len(video.truth) == len(video.frames)
    # The still face: centred, 90 px between the outer eye corners, the same in every frame.
    truth = still.truth[0]
    assert float(inter_ocular_distance(truth)) == pytest.approx(90.0)
    np.testing.assert_allclose(truth.mean(axis=0), [(CANVAS[0] - 1) / 2, (CANVAS[1] - 1) / 2])
    assert all(np.array_equal(t, truth) for t in still.truth)
    assert still.frames[0] != still.frames[1]  # noise of its own in every frame
    # The moving face moves: its truth follows the path.
    assert np.linalg.norm(moving.truth[2].mean(axis=0) - moving.truth[0].mean(axis=0)) > 20
    # The same video on every run.
    again = make_video(test_faces[0], 3, still=True, face_iod=90.0, noise=4.0, quality=80)
    assert again.frames == still.frames


def test_nme_and_jitter() -> None:
    truth = np.zeros((68, 2))
    truth[36], truth[45] = (0.0, 0.0), (100.0, 0.0)
    assert nme(truth + np.array([3.0, 4.0]), truth) == pytest.approx(0.05)
    video = Video("still", [b""] * 3, [truth] * 3)
    run = Run([truth, truth + np.array([1.0, 0.0]), None], 1.0)
    assert jitter(video, run) == pytest.approx(1.0)  # % of the inter-ocular distance


@pytest.mark.process
def test_a_smoke_run_reports_every_measure(
    tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stream.json"
    code = main(
        [
            f"--model={tiny_model}",
            f"--data-root={any_data_root}",
            "--photos=1",
            "--frames=4",
            "--clients=2",
            "--throughput-frames=2",
            "--threads=1",
            f"--output={out}",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["path"]) == {"align_per_frame", "stream_tracking", "stream_tracking_smoothed"}
    assert report["path"]["stream_tracking"]["frames"] == 4
    assert set(report["throughput"]) == {"1", "2"}
    assert report["throughput"]["2"]["stream_frames_per_s"] > 0
    assert set(report["targets"]) >= {"tracking_nme_met", "jitter_met", "speedup_met"}
    assert report["service_counts"]["frames.error"] == 0
