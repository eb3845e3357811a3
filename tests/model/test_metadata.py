"""model.metadata: the dan.* keys written and read by one pair of functions, and checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model.config import DANConfig
from model.metadata import (
    BOX_CONVENTION,
    KEYS,
    REQUIRED_KEYS,
    ConfidenceInfo,
    MetadataError,
    ModelMetadata,
    onnx_props,
    set_onnx_props,
)

RELEASED_MODEL = Path(__file__).resolve().parents[2] / "model" / "dan-300w.onnx"


def example() -> ModelMetadata:
    mean_shape = np.random.default_rng(0).uniform(20, 90, (68, 2))
    return ModelMetadata(
        name="m",
        version="1.0.0",
        input_size=112,
        mean_shape=mean_shape,
        num_stages=2,
        config=DANConfig().to_dict(),
        training_data="some faces",
        accuracy={"common": {"inter_ocular": 0.05}},
        weights_dtype="float16",
        licence="research only",
        confidence=ConfidenceInfo(
            threshold=0.7, method="a head", trained_on="crops", measured={"common": {"a": 1}}
        ),
        precision="int8",
        calibration={"crops": 200, "method": "minmax"},
        drift={"common_inter_ocular_points": 0.01},
    )


def test_every_field_has_one_key_and_the_props_read_back() -> None:
    written = example()
    props = written.to_onnx_props()
    assert list(props) == list(KEYS.values())  # every field written, in the keys' order
    assert props["dan.input_size"] == "112" and props["dan.format_version"] == "1"
    assert json.loads(props["dan.box_convention"]) == BOX_CONVENTION
    read = ModelMetadata.from_onnx_props(props)
    assert read.to_onnx_props() == props
    np.testing.assert_allclose(read.mean_shape, written.mean_shape, atol=5e-7)  # 6 decimals
    assert DANConfig.from_dict(read.config or {}) == DANConfig()
    assert (read.name, read.version, read.num_stages, read.accuracy) == (
        "m", "1.0.0", 2, {"common": {"inter_ocular": 0.05}}
    )  # fmt: skip
    assert read.confidence is not None and read.confidence.to_dict() == {
        "threshold": 0.7,
        "output_name": "confidence",
        "meaning": written.confidence.meaning if written.confidence else "",
        "method": "a head",
        "trained_on": "crops",
        "measured": {"common": {"a": 1}},
    }


@pytest.mark.skipif(not RELEASED_MODEL.is_file(), reason=f"{RELEASED_MODEL} not found")
def test_the_released_file_reads_and_writes_back_to_the_same_props() -> None:
    session = ort.InferenceSession(str(RELEASED_MODEL), providers=["CPUExecutionProvider"])
    props = dict(session.get_modelmeta().custom_metadata_map)
    metadata = ModelMetadata.from_onnx_props(props, RELEASED_MODEL)
    assert metadata.to_onnx_props() == props
    assert (metadata.name, metadata.input_size, metadata.mean_shape.shape) == (
        "dan-300w",
        112,
        (68, 2),
    )


def test_optional_fields_may_be_absent_and_unreadable_descriptions_do_not_stop_a_model() -> None:
    props = {key: value for key, value in example().to_onnx_props().items() if key in REQUIRED_KEYS}
    read = ModelMetadata.from_onnx_props(props)
    assert (read.num_stages, read.config, read.licence, read.accuracy) == (None, None, None, {})
    assert read.confidence is None  # a model without a confidence output
    assert read.box_convention == BOX_CONVENTION  # format version 1's convention
    read = ModelMetadata.from_onnx_props(props | {"dan.accuracy": "{not json", "dan.config": "[1]"})
    assert (read.accuracy, read.config) == ({}, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dan.format_version": None}, "lacks the metadata dan.format_version"),
        ({"dan.mean_shape": None, "dan.input_size": None}, "dan.input_size, dan.mean_shape"),
        ({"dan.format_version": "2"}, "dan.format_version '2'; dan-align reads format version"),
        ({"dan.landmark_scheme": "wflw98"}, "scheme 'wflw98'"),
        ({"dan.num_landmarks": "98"}, "predicts 98 landmarks"),
        ({"dan.mean_shape": "[[1, 2]]"}, "68 finite"),
        ({"dan.mean_shape": "[[1, 2"}, "not a JSON list"),
        ({"dan.input_size": "big"}, "dan.input_size must be an integer"),
        ({"dan.input_size": "4"}, "at least 8 px"),
        ({"dan.num_stages": "two"}, "dan.num_stages must be an integer"),
        ({"dan.confidence": "{not json"}, "dan.confidence is not JSON"),
        ({"dan.confidence": '{"meaning": "x"}'}, "dan.confidence must be a JSON object with a"),
        ({"dan.confidence": '{"threshold": "high"}'}, "threshold must be a number"),
        ({"dan.confidence": '{"threshold": 1.5}'}, r"threshold must be in \[0, 1\], got 1.5"),
        ({"dan.confidence": '{"threshold": 0.5, "output_name": 3}'}, "output_name must be a"),
    ],
)
def test_bad_metadata_is_refused_saying_what_was_expected(
    change: dict[str, str | None], message: str
) -> None:
    props = example().to_onnx_props()
    for key, value in change.items():
        if value is None:
            del props[key]
        else:
            props[key] = value
    with pytest.raises(MetadataError, match=message) as refused:
        ModelMetadata.from_onnx_props(props, "some.onnx")
    assert str(refused.value).startswith("some.onnx")


def test_props_are_set_in_a_proto_keeping_other_entries() -> None:
    proto = onnx.ModelProto()
    proto.metadata_props.add(key="other", value="kept")
    proto.metadata_props.add(key="dan.model_name", value="old")
    set_onnx_props(proto, example().to_onnx_props())
    props = onnx_props(proto)
    assert props["other"] == "kept" and props["dan.model_name"] == "m"
    assert len(proto.metadata_props) == len(KEYS) + 1
    assert ModelMetadata.from_onnx_props(props).to_onnx_props() == example().to_onnx_props()
