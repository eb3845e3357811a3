"""Per-face confidence, status, head pose and face order through the app (issue 14), in-process.

Models are real exports: the tiny random DAN without a confidence output
(``tiny_model``) and with a constant one (``confidence_model``); faces come
from request boxes, from the box-less procedure and from a detector whose
findings are fixed in advance (``Detections``). Head pose is checked on real
photos with the released model: a photo and its mirror image, a photo and the
same photo turned in its plane.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from app_harness import serve, settings_for
from confidence_model import constant_confidence_model

from model.arrays import FloatArray, GrayImage
from model.geometry import apply_affine, bounding_box
from service.engine import Engine, FaceOutput
from service.errors import ModelError
from service.initialisation import FaceProposal
from training.dataset import Sample, load_split

RELEASED_MODEL = Path(__file__).resolve().parents[2] / "model" / "dan-300w.onnx"
LOW, THRESHOLD = 0.3, 0.5


@pytest.fixture(scope="module")
def confidence_model(tmp_path_factory: pytest.TempPathFactory, mean_shape: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("confidence") / "low.onnx"
    return constant_confidence_model(path, mean_shape, LOW, THRESHOLD)


@pytest.fixture(scope="module")
def photos(data_root: Path) -> list[Sample]:
    return load_split(data_root, "common").samples[::60][:6]


class Detections:
    """A face finder answering fixed detector boxes with their scores, best score first."""

    def __init__(self, found: Sequence[tuple[Sequence[float], float]]) -> None:
        self.found = sorted(found, key=lambda f: -f[1])

    def propose(self, image: GrayImage) -> list[FaceProposal]:
        return [
            FaceProposal(np.asarray(box, float), "detector", score) for box, score in self.found
        ]

    def refine(
        self, proposal: FaceProposal, landmarks: FloatArray, passes_done: int
    ) -> FaceProposal | None:
        return None


def encoded(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def photo(sample: Sample) -> np.ndarray:
    image = cv2.imread(str(sample.image_path))
    assert image is not None
    return image


async def align(served: Any, image: np.ndarray, boxes: list[list[float]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"image": encoded(image)}
    if boxes is not None:
        body["boxes"] = boxes
    response = await served.client.post("/align", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_engine_answers_the_model_s_confidence_or_none(
    confidence_model: Path, tiny_model: Path
) -> None:
    crops = [np.full((112, 112), v, np.uint8) for v in (30, 120, 200)]
    for io_binding in (False, True):  # the plain run and the bound buffers
        engine = Engine(settings_for(confidence_model, io_binding=io_binding))
        outputs = engine.run_faces(crops)
        assert all(isinstance(o, FaceOutput) for o in outputs)
        assert [o.confidence for o in outputs if isinstance(o, FaceOutput)] == pytest.approx(
            [LOW] * 3, abs=1e-3
        )
        assert engine.min_confidence == THRESHOLD  # the model's default
    assert Engine(settings_for(confidence_model, min_confidence=0.1)).min_confidence == 0.1
    plain = Engine(settings_for(tiny_model))
    outputs = plain.run_faces(crops)
    assert [o.confidence for o in outputs if isinstance(o, FaceOutput)] == [None] * 3
    assert plain.min_confidence is None
    with pytest.raises(ModelError, match=r"DAN_MIN_CONFIDENCE is set .* no confidence output"):
        Engine(settings_for(tiny_model, min_confidence=0.5))


def test_the_answer_schema_documents_confidence_status_and_pose(tiny_model: Path) -> None:
    async def main() -> None:
        async with serve(settings_for(tiny_model)) as served:
            schema = (await served.client.get("/openapi.json")).json()["components"]["schemas"]
            face = schema["Face"]["properties"]
            assert {"confidence", "status", "pose"} <= set(face)
            assert "pose" in schema["Face"]["required"]
            assert set(schema["Pose"]["properties"]) == {"yaw", "pitch", "roll"}
            assert "low_confidence" in str(face["status"])
            assert "image's right" in schema["Pose"]["properties"]["yaw"]["description"]

    asyncio.run(main())


def test_a_model_without_confidence_answers_none_and_ok_with_a_pose(
    tiny_model: Path, photos: list[Sample]
) -> None:
    async def main() -> None:
        async with serve(settings_for(tiny_model)) as served:
            box = [float(v) for v in np.asarray(photos[0].detector_box)]
            (face,) = (await align(served, photo(photos[0]), [box]))["faces"]
            assert face["confidence"] is None and face["status"] == "ok"
            assert set(face["pose"]) == {"yaw", "pitch", "roll"}
            assert await served.metric("dan_face_confidence_count") == 0

    asyncio.run(main())


def test_below_the_threshold_request_faces_are_flagged_and_detected_faces_dropped(
    confidence_model: Path, photos: list[Sample]
) -> None:
    image = photo(photos[0])
    box = [float(v) for v in np.asarray(photos[0].detector_box)]
    elsewhere = [box[0] + 5, box[1] + 5, box[2] + 5, box[3] + 5]
    finder = Detections([(box, 0.9), (elsewhere, 0.8)])

    async def main() -> None:
        async with serve(settings_for(confidence_model), initialiser=finder) as served:
            (face,) = (await align(served, image, [box]))["faces"]
            assert face["status"] == "low_confidence"
            assert face["confidence"] == pytest.approx(LOW, abs=1e-3)
            assert (await align(served, image, None))["faces"] == []  # both detections dropped
            assert await served.metric("dan_low_confidence_faces_total", action="flagged") == 1
            assert await served.metric("dan_low_confidence_faces_total", action="dropped") == 2
            assert await served.metric("dan_face_confidence_count") == 3
            assert await served.metric("dan_face_confidence_bucket", le="0.3") == 0
            assert await served.metric("dan_face_confidence_bucket", le="0.35") == 3
            assert await served.metric("dan_faces_aligned_total") == 1

        # The box-less procedure's face is the service's guess, not a detection: kept, flagged.
        async with serve(settings_for(confidence_model)) as served:
            (face,) = (await align(served, image, None))["faces"]
            assert (face["box_source"], face["status"]) == ("whole_image", "low_confidence")

        # DAN_MIN_CONFIDENCE below the faces' confidence: every face ok, none dropped.
        lenient = settings_for(confidence_model, min_confidence=0.2)
        async with serve(lenient, initialiser=finder) as served:
            faces = (await align(served, image, None))["faces"]
            assert [f["status"] for f in faces] == ["ok", "ok"]
            assert await served.metric("dan_low_confidence_faces_total", action="dropped") == 0

    asyncio.run(main())


@pytest.mark.parametrize(
    ("order", "max_faces", "expected"),
    [("score", 3, [0.9, 0.8, 0.7]), ("area", 3, [0.7, 0.8, 0.9]), ("area", 2, [0.7, 0.8])],
)
def test_detected_faces_in_score_or_area_order(
    tiny_model: Path, photos: list[Sample], order: str, max_faces: int, expected: list[float]
) -> None:
    image = photo(photos[0])
    # Best score first, smallest box first: the two orders disagree.
    found = [([10.0, 10.0, 60.0, 60.0], 0.9), ([80, 20, 160, 100], 0.8), ([5, 120, 205, 320], 0.7)]
    settings = settings_for(tiny_model, face_order=order, max_faces=max_faces)

    async def main() -> None:
        async with serve(settings, initialiser=Detections(found)) as served:
            faces = (await align(served, image, None))["faces"]
            assert [f["score"] for f in faces] == pytest.approx(expected)
            # Request boxes keep their order whatever the setting.
            boxes = [b for b, _ in found][:max_faces]
            answered = (await align(served, image, [list(map(float, b)) for b in boxes]))["faces"]
            assert [f["box_source"] for f in answered] == ["request"] * len(boxes)
            widths = [f["box"][2] - f["box"][0] for f in answered]
            assert widths == pytest.approx([b[2] - b[0] for b in boxes], abs=1e-6)

    asyncio.run(main())


@pytest.mark.skipif(not RELEASED_MODEL.is_file(), reason=f"{RELEASED_MODEL} not found")
def test_pose_of_a_photo_its_mirror_image_and_the_photo_turned_in_plane(
    photos: list[Sample],
) -> None:
    """Through the service with the released model: mirror -> yaw and roll change sign, pitch
    stays; turned clockwise by an angle -> roll grows by it (both within 2 degrees)."""
    angle = 20.0

    async def main() -> None:
        async with serve(settings_for(RELEASED_MODEL)) as served:
            for sample in photos:
                image = photo(sample)
                height, width = image.shape[:2]
                box = [float(v) for v in bounding_box(sample.landmarks)]
                mirrored_box = [width - 1 - box[2], box[1], width - 1 - box[0], box[3]]
                turn = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), -angle, 1.0)
                turned = cv2.warpAffine(image, turn, (width, height))
                turned_box = [float(v) for v in bounding_box(apply_affine(turn, sample.landmarks))]
                (a,) = (await align(served, image, [box]))["faces"]
                (m,) = (await align(served, np.ascontiguousarray(image[:, ::-1]), [mirrored_box]))[
                    "faces"
                ]
                (t,) = (await align(served, turned, [turned_box]))["faces"]
                pose, mirror, rolled = a["pose"], m["pose"], t["pose"]
                assert mirror["yaw"] == pytest.approx(-pose["yaw"], abs=2.0), sample.name
                assert mirror["roll"] == pytest.approx(-pose["roll"], abs=2.0), sample.name
                assert mirror["pitch"] == pytest.approx(pose["pitch"], abs=2.0), sample.name
                assert rolled["roll"] - pose["roll"] == pytest.approx(angle, abs=2.0), sample.name

    asyncio.run(main())
