"""``dan_align.stream`` against a real service: answers in order with track ids, options, the
service's errors in its words, and the fallback of ``dan-align video`` to ``/align``."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from client_support import API_KEY, Service

from dan_align import Client
from dan_align.errors import InputError, ServiceError
from dan_align.stream import NoStreamEndpointError, StreamAnswer, open_stream, stream_url
from dan_align.video import align_video

pytestmark = pytest.mark.process  # a real python -m service (conftest.align_service)


def test_stream_urls() -> None:
    assert stream_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/align/stream"
    assert stream_url("https://faces.example") == "wss://faces.example/align/stream"
    with pytest.raises(InputError):
        stream_url("127.0.0.1:8000")


def test_frames_are_answered_in_order_with_track_ids(
    align_service: Service, photos: list[Path]
) -> None:
    image = cv2.imread(str(photos[0]))
    frames = [np.roll(image, 2 * k, axis=1) for k in range(6)]  # numpy frames, as a video gives
    with open_stream(align_service.url, smoothing=False) as stream:
        answers = [answer for _, answer in stream.align_all(frames, window=3)]
    assert [a.frame for a in answers] == list(range(6))
    assert all(isinstance(a, StreamAnswer) and a.alignment is not None for a in answers)
    faces = [a.alignment.faces for a in answers if a.alignment is not None]
    assert [f[0].track_id for f in faces] == [1] * 6
    assert [f[0].box_source for f in faces] == ["detector"] + ["track"] * 5
    with Client(align_service.url) as client:
        expected = client.align(frames[0]).faces[0].landmarks
    np.testing.assert_allclose(faces[0][0].landmarks, expected, atol=0.01)


def test_a_bad_frame_is_an_answer_and_a_bad_option_an_error(
    align_service: Service, photos: list[Path]
) -> None:
    with open_stream(align_service.url) as stream:
        stream.send(b"no image here")
        refused = stream.receive()
        assert refused.alignment is None and refused.error == "not_an_image"
        stream.set_options(redetect_every=0)
        with pytest.raises(ServiceError) as raised:
            stream.receive()
        assert raised.value.error == "invalid_request"
        assert "redetect_every must be a whole number" in raised.value.detail
        stream.send(photos[0])  # a path, like Client.align takes
        assert stream.receive().frame == 1


def test_a_service_without_the_endpoint_and_one_that_wants_a_key(
    align_service: Service, keyed_service: Service
) -> None:
    with pytest.raises(NoStreamEndpointError):  # no WebSocket route there: the upgrade is refused
        open_stream(align_service.url + "/somewhere-else")
    with pytest.raises(ServiceError) as raised:
        open_stream(keyed_service.url)
    assert (raised.value.status, raised.value.error) == (401, "unauthorized")
    with open_stream(keyed_service.url, API_KEY) as stream:
        stream.send(np.zeros((64, 64), dtype=np.uint8))
        assert stream.receive().frame == 0


def test_video_falls_back_to_align_without_a_stream_endpoint(
    align_service: Service, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_endpoint(*args: object, **kwargs: object) -> None:
        raise NoStreamEndpointError("the service has no stream endpoint (404)")

    monkeypatch.setattr("dan_align.video.open_stream", no_endpoint)
    source = tmp_path / "clip.mp4"
    image = cv2.imread(str(photos[0]))
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, image.shape[1::-1])
    for _ in range(2):
        writer.write(image)
    writer.release()
    out = io.StringIO()
    with Client(align_service.url) as client:
        summary = align_video(client, source, out, progress=False)
    assert summary.via == "align" and summary.answered == 2
    with pytest.raises(NoStreamEndpointError), Client(align_service.url) as client:
        align_video(client, source, io.StringIO(), progress=False, via="stream")
