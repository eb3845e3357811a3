"""The engine's GPU paths: CUDA with and without IO binding, the fp16 file, TensorRT.

Skipped, with the reason, where onnxruntime has no CUDA provider (every CPU machine and CI);
``bench/gpu_check.sh`` runs them (``pytest -m gpu``) on a lent GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.config import Settings
from service.engine import Engine
from training.fp16 import convert

PROVIDERS = ort.get_available_providers()
HAS_CUDA = "CUDAExecutionProvider" in PROVIDERS
NEEDS_CUDA = pytest.mark.skipif(
    not HAS_CUDA, reason="needs onnxruntime-gpu with the CUDA provider and a GPU"
)


def has_tensorrt() -> bool:
    if "TensorrtExecutionProvider" not in PROVIDERS:
        return False
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def fp16_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp16") / "tiny.fp16.onnx"
    convert(tiny_model, path)
    return path


@pytest.mark.gpu
@NEEDS_CUDA
def test_io_binding_on_and_off_agree_on_cuda(tiny_model: Path) -> None:
    bound = Engine(Settings(model_path=tiny_model, provider="cuda", max_batch_size=8))
    plain = Engine(
        Settings(model_path=tiny_model, provider="cuda", max_batch_size=8, io_binding=False)
    )
    assert bound.use_io_binding and not plain.use_io_binding
    for count in (1, 3, 8):
        batch = crops(count, seed=count)
        assert np.allclose(np.stack(bound.run(batch)), np.stack(plain.run(batch)), atol=1e-3)


@pytest.mark.gpu
@NEEDS_CUDA
def test_cuda_runs_the_fp16_file_close_to_the_fp32_file(tiny_model: Path, fp16_model: Path) -> None:
    full = Engine(Settings(model_path=tiny_model, provider="cuda", max_batch_size=8))
    half = Engine(Settings(model_path=fp16_model, provider="cuda", max_batch_size=8))
    assert half.provider == "cuda" and half.info.compute_precision == "float16"
    half.warm_up(runs=1)
    batch = crops(8, seed=1)
    difference = np.abs(np.stack(half.run(batch)) - np.stack(full.run(batch)))
    assert difference.max() < 0.5  # crop pixels


@pytest.mark.gpu
@NEEDS_CUDA
def test_cuda_batches_up_to_256(tiny_model: Path) -> None:
    engine = Engine(Settings(model_path=tiny_model, provider="cuda", max_batch_size=256))
    assert engine.batch_sizes == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    engine.warm_up(runs=1)
    out = engine.run(crops(200))
    assert len(out) == 200 and all(np.isfinite(o).all() for o in out)


@pytest.mark.gpu
@pytest.mark.skipif(not has_tensorrt(), reason="needs onnxruntime's TensorRT provider and tensorrt")
def test_tensorrt_matches_cpu(tiny_model: Path) -> None:
    trt = Engine(Settings(model_path=tiny_model, provider="tensorrt", max_batch_size=4))
    cpu = Engine(Settings(model_path=tiny_model, provider="cpu", max_batch_size=4))
    batch = crops(4, seed=2)
    assert np.allclose(np.stack(trt.run(batch)), np.stack(cpu.run(batch)), atol=1e-2)
