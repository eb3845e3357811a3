"""DAN_MIRROR_AVERAGE through the app, in-process: answers, readiness and metrics say the mode.

The model is ``symmetric_tiny_model``: its mean shape is its own mirror image, so
the crop of a mirrored photo (with the mirrored box) is the mirrored crop, and
its random output layers make its answers depend on the face. With mirror
averaging, a mirrored photo is answered with the mirrored landmarks; without
it, the random network does not do that.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
from app_harness import Served, png, serve, settings_for

from model.landmarks import mirror_landmarks

BOX = [40.0, 30.0, 150.0, 145.0]


def textured_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (180, 200), dtype=np.uint8), (0, 0), 3)


async def landmarks(served: Served, image: np.ndarray, box: list[float]) -> np.ndarray:
    response = await served.client.post(
        "/align",
        files={"image": ("face.png", png(image))},
        data={"boxes": json.dumps([box])},
    )
    assert response.status_code == 200, response.text
    (face,) = response.json()["faces"]
    return np.asarray(face["landmarks"], dtype=np.float64)


def mirror_gap(symmetric_tiny_model: Path, mirror_average: bool) -> tuple[float, dict, float]:
    """Largest distance (px) between the answer for the photo and the mirrored answer for
    the mirrored photo; ``/health/ready``'s body; ``dan_model_info`` with the mode's label."""
    image = textured_image()
    width = image.shape[1]
    mirrored_box = [width - 1 - BOX[2], BOX[1], width - 1 - BOX[0], BOX[3]]

    async def main() -> tuple[float, dict, float]:
        settings = settings_for(symmetric_tiny_model, mirror_average=mirror_average)
        async with serve(settings) as served:
            there = await landmarks(served, image, BOX)
            back = await landmarks(served, np.ascontiguousarray(image[:, ::-1]), mirrored_box)
            ready = (await served.client.get("/health/ready")).json()
            labels = {
                "name": "symmetric",
                "version": "0.0.1",
                "provider": "cpu",
                "precision": "float32",
                "mirror_average": "true" if mirror_average else "false",
            }
            metrics = await served.metrics()
            info = metrics.get(("dan_model_info", tuple(sorted(labels.items()))), 0.0)
        return float(np.abs(mirror_landmarks(back, width) - there).max()), ready, info

    return asyncio.run(main())


def test_mirror_averaging_answers_a_mirrored_photo_with_the_mirrored_landmarks(
    symmetric_tiny_model: Path,
) -> None:
    averaged, ready, info = mirror_gap(symmetric_tiny_model, mirror_average=True)
    assert ready["mirror_average"] is True and info == 1
    plain, ready, info = mirror_gap(symmetric_tiny_model, mirror_average=False)
    assert ready["mirror_average"] is False and info == 1
    assert averaged < 0.05 < 0.5 < plain
