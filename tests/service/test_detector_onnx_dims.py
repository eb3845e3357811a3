"""service.detectors.onnx_dims: fixed graph shapes made symbolic, everything else untouched."""

from __future__ import annotations

import importlib.resources

import onnx
import pytest

from service.detectors.onnx_dims import OnnxShapeError, with_symbolic_dims


@pytest.fixture(scope="module")
def centerface_bytes() -> bytes:
    return (importlib.resources.files("service.detectors") / "centerface.onnx").read_bytes()


def dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_only_the_named_shapes_change(centerface_bytes: bytes) -> None:
    before = onnx.load_from_string(centerface_bytes)
    assert dims(before.graph.input[0]) == [10, 3, 32, 32]  # the published file's fixed shape
    after = onnx.load_from_string(
        with_symbolic_dims(centerface_bytes, {"input.1": ["n", 3, "h", "w"], "537": ["n", 1]})
    )
    onnx.checker.check_model(after)
    assert dims(after.graph.input[0]) == ["n", 3, "h", "w"]
    assert dims(after.graph.output[0]) == ["n", 1]
    assert dims(after.graph.output[1]) == dims(before.graph.output[1])
    # Nodes, weights and opsets pass through unchanged.
    assert after.graph.node == before.graph.node
    assert after.graph.initializer == before.graph.initializer
    assert after.opset_import == before.opset_import


def test_an_unknown_input_or_output_is_refused(centerface_bytes: bytes) -> None:
    with pytest.raises(OnnxShapeError, match="no input or output named image"):
        with_symbolic_dims(centerface_bytes, {"image": ["n", 3, "h", "w"]})
