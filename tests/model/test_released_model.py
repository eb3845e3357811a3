"""The released model file: size, metadata, and accuracy on a few common-test faces.

The bounds were measured when the model was released (see model/MODEL_CARD.md)
and sit a little above the measurement, so a regression in the model, the
export or the crop convention fails here.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from model.metadata import ModelMetadata
from training.evaluate import evaluate

RELEASED_MODEL = Path(__file__).resolve().parents[2] / "model" / "dan-300w.onnx"

# Inter-ocular mean error of the released model on the first 5 common-test images
# (lfpw/testset), initialised from boxes.csv: measured at release, plus a margin.
MEASURED_5_IMAGES = {"stage 1": 0.0727, "stage 2": 0.0468}  # v1.1.0
MARGIN = 1.15

pytestmark = pytest.mark.skipif(not RELEASED_MODEL.is_file(), reason=f"{RELEASED_MODEL} not found")


def test_released_file_is_compact_and_self_describing() -> None:
    assert RELEASED_MODEL.stat().st_size < 50e6
    session = ort.InferenceSession(str(RELEASED_MODEL), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    assert meta.weights_dtype == "float16" and meta.num_stages == 2
    common = meta.accuracy["common"]
    assert common["images"] == 554 and common["boxes"] == "file"
    assert common["inter_ocular"] <= 0.045  # issue 7's acceptance bound (4.35% measured, v1.1.0)
    assert common["failure_0_08"] <= 0.03


def test_error_on_five_common_test_images_stays_below_the_release_bound(data_root: Path) -> None:
    summary = evaluate(RELEASED_MODEL, data_root, "common", limit=5, threads=2)
    assert summary["images"] == 5
    for stage, measured in MEASURED_5_IMAGES.items():
        got = summary["stages"][stage]["inter_ocular"]
        assert got <= measured * MARGIN, f"{stage}: {got:.4f} > {measured:.4f} x {MARGIN}"
    # Stage 2 refines stage 1.
    assert (
        summary["stages"]["stage 2"]["inter_ocular"] < summary["stages"]["stage 1"]["inter_ocular"]
    )
