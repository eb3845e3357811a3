"""The released model through the running service: landmarks close to the 300-W ground truth.

Runs once ``model/dan-300w.onnx`` exists (skipped with the reason until then), on the real
300-W test faces (skipped without them: a trained model's accuracy needs real faces).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from service_support import reference_session, serving

from bench.serving import ServiceProcess
from model.metadata import ModelMetadata
from training.dataset import Sample
from training.metrics import normalised_errors
from training.paths import REPO_ROOT

RELEASED_MODEL = REPO_ROOT / "model" / "dan-300w.onnx"
MAX_MEAN_NME = 0.042  # inter-ocular mean over the 5 faces: 0.0367 measured at release (v1.2.0)

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not RELEASED_MODEL.is_file(),
        reason=f"the released model {RELEASED_MODEL} is not there yet (training exports it)",
    ),
]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # No DAN_MODEL_PATH: the released model is the default.
    with serving(tmp_path_factory.mktemp("released-service")) as running:
        yield running


def test_released_model_landmarks_are_close_to_the_ground_truth(
    released: ServiceProcess, real_test_faces: list[Sample]
) -> None:
    predicted, truth = [], []
    for sample in real_test_faces:
        response = released.client.post(
            "/align",
            files={"image": (sample.image_path.name, sample.image_path.read_bytes())},
            data={"boxes": json.dumps([sample.detector_box.tolist()])},
        )
        assert response.status_code == 200, response.text
        predicted.append(response.json()["faces"][0]["landmarks"])
        truth.append(sample.landmarks)
    errors = normalised_errors(np.asarray(predicted), np.stack(truth), "inter_ocular")
    assert errors.mean() < MAX_MEAN_NME, f"inter-ocular NME per face: {np.round(errors, 4)}"


def test_the_released_model_is_served_by_default(released: ServiceProcess) -> None:
    ready = released.client.get("/health/ready").json()
    assert ready["status"] == "ready"
    metadata = ModelMetadata.from_onnx_props(
        reference_session(RELEASED_MODEL).get_modelmeta().custom_metadata_map, RELEASED_MODEL
    )
    assert ready["model"] == {"name": metadata.name, "version": metadata.version}
