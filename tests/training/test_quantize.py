"""training.quantize and training.fp16 on the tiny model: the files, their metadata, the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model.metadata import ModelMetadata, onnx_props
from service.config import Settings
from service.engine import Engine
from training import fp16, quantize


def crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def int8_run(
    tiny_model: Path, any_data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    code = quantize.main(
        [str(tiny_model), "--data-root", str(any_data_root), "--out", str(out),
         "--calibration-images", "12", "--limit", "6", "--threads", "1"]
    )  # fmt: skip
    return out, code


def test_the_int8_file_says_how_it_was_made_and_what_it_drifted(
    int8_run: tuple[Path, int], tiny_model: Path
) -> None:
    path, code = int8_run
    assert code == 0
    meta = ModelMetadata.from_onnx_props(onnx_props(onnx.load(str(path))), path)
    assert meta.precision == "int8" and meta.compute_precision == "int8"
    assert meta.name == "tiny" and meta.version == "0.0.1"
    calibration = meta.calibration
    assert calibration is not None
    assert calibration["split"] == "training" and calibration["images"] == 12
    assert calibration["first"].startswith(("afw/", "lfpw/trainset/", "helen/trainset/"))
    assert calibration["last"].startswith(("afw/", "lfpw/trainset/", "helen/trainset/"))
    kept = calibration["fp32_layers"]
    assert len(kept) == 2 and all(
        name.endswith(("/stages.0/fc2/Gemm", "/stages.1/fc2/Gemm")) for name in kept
    )
    drift = meta.drift
    assert drift is not None and drift["split"] == "common" and drift["images"] == 6
    assert set(drift["difference_points"]) >= {"inter_ocular", "auc_0_08"}
    assert meta.accuracy["common"]["images"] == 6
    # The fp32 file's own metadata is untouched.
    source = ModelMetadata.from_onnx_props(onnx_props(onnx.load(str(tiny_model))), tiny_model)
    assert source.precision is None and source.compute_precision == "float32"


def test_the_int8_graph_quantizes_the_weight_layers_but_not_the_landmark_outputs(
    int8_run: tuple[Path, int],
) -> None:
    proto = onnx.load(str(int8_run[0]))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and "DequantizeLinear" in ops
    fc2 = [n for n in proto.graph.node if "/fc2/" in n.name]
    initializers = {t.name: t for t in proto.graph.initializer}
    for node in fc2:  # float32 weights, straight from an initializer
        assert initializers[node.input[1]].data_type == onnx.TensorProto.FLOAT
    # the connection layers' arithmetic is never quantized
    quantized_inputs = {n.input[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    assert not any("/connections.0/Sub" in name for name in quantized_inputs)


def test_the_service_engine_serves_the_int8_file_close_to_the_fp32_one(
    int8_run: tuple[Path, int], tiny_model: Path
) -> None:
    int8 = Engine(Settings(model_path=int8_run[0], provider="cpu", max_batch_size=4))
    full = Engine(Settings(model_path=tiny_model, provider="cpu", max_batch_size=4))
    assert int8.info.compute_precision == "int8"
    batch = crops(4)
    difference = np.abs(np.stack(int8.run(batch)) - np.stack(full.run(batch)))
    assert difference.max() < 2.0  # crop pixels; a random tiny model, not a trained one


def test_groups_and_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown layer group"):
        quantize.QuantizeOptions(keep_fp32=("nonsense",))
    with pytest.raises(ValueError, match="method"):
        quantize.QuantizeOptions(method="median")
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\], got 100.5"):
        quantize.QuantizeOptions(method="percentile", percentile=100.5)
    assert quantize.in_groups("MatMulBnFusion_Gemm_token_1", ("fc1",))
    assert quantize.in_groups("/dan/stages.1/features/features.0/Conv", ("first_conv",))
    assert not quantize.in_groups("/dan/stages.1/features/features.3/Conv", ("first_conv",))


def test_fp16_file_has_float16_stages_and_float32_io(
    tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tiny.fp16.onnx"
    assert fp16.main(
        [str(tiny_model), "--data-root", str(any_data_root), "--out", str(out), "--limit", "4",
         "--threads", "1"]
    ) == 0  # fmt: skip
    proto = onnx.load(str(out))
    meta = ModelMetadata.from_onnx_props(onnx_props(proto), out)
    assert meta.precision == "float16" and meta.weights_dtype == "float16"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    half = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert any("stages" in t.name for t in half)
    if fp16.cpu_can_run(out) is None:  # measured on this CPU
        assert meta.drift is not None and meta.drift["images"] == 4
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        reference = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
        x = np.stack(crops(2))[:, None].astype(np.float32)
        (got,) = session.run(["landmarks"], {"images": x})
        (want,) = reference.run(["landmarks"], {"images": x})
        assert np.abs(got - want).max() < 0.5
