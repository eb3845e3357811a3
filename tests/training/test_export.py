"""training.export: one ONNX graph, default-domain ops, metadata, weights that read back."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from model.metadata import BOX_CONVENTION, ModelMetadata, onnx_props
from training.export import export, read_onnx_weights

CONFIG = DANConfig(widths=(8, 16, 16, 32), fc_units=32, num_stages=2)
log = logging.getLogger(__name__)


def _calibrated_model(mean_shape: np.ndarray) -> DAN:
    """A random 2-stage DAN whose batch norms have seen data (non-trivial statistics)."""
    torch.manual_seed(0)
    mean_image = torch.full((112, 112), 110.0) + torch.linspace(-10, 10, 112)
    model = DAN(
        CONFIG, torch.from_numpy(mean_shape).float(), mean_image, torch.full((112, 112), 60.0)
    )
    for stage in model.stages:
        torch.nn.init.normal_(stage.fc2.weight, std=0.02)
        torch.nn.init.normal_(stage.fc2.bias, std=0.5)
    model.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, 1, 112, 112, generator=gen) * 255)
    return model.eval()


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, mean_shape: np.ndarray
) -> tuple[DAN, Path, Path]:
    model = _calibrated_model(mean_shape)
    bn = model.stages[0].features[1]
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    folder = tmp_path_factory.mktemp("export")
    fp32, fp16 = folder / "fp32.onnx", folder / "fp16.onnx"
    accuracy = {"common": {"inter_ocular": 0.05}}
    export(model, fp32, name="t", version="1.2.3", accuracy=accuracy, fp16=False)
    export(model, fp16, name="t", version="1.2.3", accuracy=accuracy, fp16=True)
    return model, fp32, fp16


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_onnxruntime_matches_torch(exported: tuple[DAN, Path, Path], batch: int) -> None:
    model, fp32, _ = exported
    x = torch.rand(batch, 1, 112, 112, generator=torch.Generator().manual_seed(batch)) * 255
    with torch.no_grad():
        expected = torch.stack(model(x), dim=1).numpy()  # (B, stages, 68, 2)
    landmarks, stages = _session(fp32).run(None, {"images": x.numpy()})
    assert landmarks.shape == (batch, 68, 2) and stages.shape == (batch, 2, 68, 2)
    np.testing.assert_allclose(landmarks, expected[:, -1], atol=1e-3, rtol=0)
    np.testing.assert_allclose(stages, expected, atol=1e-3, rtol=0)
    # The stage-2 update is not trivially zero: the test exercises the connection layers.
    assert np.abs(expected[:, 1] - expected[:, 0]).max() > 0.1


def test_fp16_weights_drift_little(exported: tuple[DAN, Path, Path]) -> None:
    _, fp32, fp16 = exported
    x = (torch.rand(8, 1, 112, 112, generator=torch.Generator().manual_seed(9)) * 255).numpy()
    a = _session(fp32).run(["landmarks"], {"images": x})[0]
    b = _session(fp16).run(["landmarks"], {"images": x})[0]
    drift = np.abs(a - b).max()
    log.warning(
        "fp16 weights vs fp32: max landmark drift %.4f px (mean %.4f)", drift, np.abs(a - b).mean()
    )
    assert drift < 0.25
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size


def test_graph_is_standard_onnx(exported: tuple[DAN, Path, Path]) -> None:
    for path in exported[1:]:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert "GridSample" in {n.op_type for n in proto.graph.node}
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 112, 112]


def test_metadata_describes_the_model(exported: tuple[DAN, Path, Path]) -> None:
    model, _, fp16 = exported
    props = onnx_props(onnx.load(str(fp16), load_external_data=False))
    meta = ModelMetadata.from_onnx_props(props, fp16)
    assert meta.to_onnx_props() == props  # only dan.* keys, as the one writer writes them
    assert meta.config is not None and DANConfig.from_dict(meta.config) == model.config
    assert meta.format_version == "1" and meta.landmark_scheme == "ibug68"
    assert meta.input_size == 112 and meta.num_stages == 2
    assert (meta.input_name, meta.output_name) == ("images", "landmarks")
    np.testing.assert_allclose(meta.mean_shape, model.mean_shape.numpy(), atol=1e-5)
    assert meta.accuracy == {"common": {"inter_ocular": 0.05}}
    assert meta.box_convention == BOX_CONVENTION and BOX_CONVENTION["name"] == "dan-box"
    assert meta.licence is not None and "non-commercial" in meta.licence
    assert (meta.name, meta.version, meta.weights_dtype) == ("t", "1.2.3", "float16")


def test_weights_read_back_into_the_same_model(exported: tuple[DAN, Path, Path]) -> None:
    model, fp32, fp16 = exported
    config, state = read_onnx_weights(fp32)
    assert config == model.config
    rebuilt = DAN(config)
    rebuilt.load_state_dict(state, strict=False)
    rebuilt.eval()
    x = torch.rand(2, 1, 112, 112) * 255
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x)[-1], model(x)[-1])
    # From fp16 storage: the same weights up to fp16 rounding.
    _, state16 = read_onnx_weights(fp16)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(state16[key], value.float(), atol=2e-3, rtol=2e-3, msg=key)
