"""service.engine: metadata checks, refusals at load, and outputs equal to onnxruntime's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from confidence_model import varying_confidence_model
from service_support import reference_session

from model.config import DANConfig
from model.landmarks import mirror_landmarks
from service.config import Settings
from service.engine import Engine, read_model_info
from service.errors import ModelError, ProviderError

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def metadata_of(path: Path) -> dict[str, str]:
    return dict(reference_session(path).get_modelmeta().custom_metadata_map)


def variant(source: Path, target: Path, change: dict[str, str | None]) -> Path:
    """A copy of a model with metadata entries replaced (or removed where None)."""
    proto = onnx.load(str(source))
    kept = {p.key: p.value for p in proto.metadata_props}
    for key, value in change.items():
        if value is None:
            kept.pop(key, None)
        else:
            kept[key] = value
    del proto.metadata_props[:]
    for key, value in kept.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(target))
    return target


def crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112), dtype=np.uint8) for _ in range(count)]


def engine(model: Path, **settings: object) -> Engine:
    return Engine(Settings(model_path=model, provider="cpu", cpu_threads=1, **settings))  # type: ignore[arg-type]


def test_metadata_is_read(tiny_model: Path, mean_shape: np.ndarray) -> None:
    info = read_model_info(metadata_of(tiny_model), tiny_model)
    assert (info.name, info.version, info.format_version) == ("tiny", "0.0.1", "1")
    assert (info.input_size, info.input_name, info.output_name) == (112, "images", "landmarks")
    assert info.num_landmarks == 68 and info.num_stages == 2
    assert np.allclose(info.mean_shape, mean_shape, atol=1e-5)


def test_bad_metadata_is_a_model_error_naming_the_file(tiny_model: Path) -> None:
    # Every refusal of model.metadata (tests/model/test_metadata.py) reaches the service so.
    metadata = metadata_of(tiny_model)
    metadata["dan.format_version"] = "2"
    with pytest.raises(
        ModelError, match=r"tiny\.onnx has dan\.format_version '2'; dan-align reads"
    ):
        read_model_info(metadata, tiny_model)


def test_a_file_without_metadata_is_refused_at_load(tiny_model: Path, tmp_path: Path) -> None:
    bare = variant(tiny_model, tmp_path / "bare.onnx", dict.fromkeys(metadata_of(tiny_model)))
    with pytest.raises(ModelError, match=r"expected an ONNX file written by training\.export"):
        engine(bare)


def test_a_file_naming_a_missing_output_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    odd = variant(tiny_model, tmp_path / "odd.onnx", {"dan.output_name": "points"})
    with pytest.raises(ModelError, match="graph's outputs are"):
        engine(odd)


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model" * 100)
    with pytest.raises(ModelError, match="cannot be loaded by onnxruntime"):
        engine(junk)


@pytest.mark.parametrize("io_binding", [False, True])
def test_outputs_equal_a_plain_session_for_every_batch_size(
    tiny_model: Path, io_binding: bool
) -> None:
    served = engine(tiny_model, max_batch_size=4, io_binding=io_binding)
    assert served.provider == "cpu" and served.use_io_binding is io_binding
    session = reference_session(tiny_model)
    for count in (1, 3, 4, 2):  # IO binding keeps one set of buffers per size
        batch = crops(count, seed=count)
        got = served.run(batch)
        (want,) = session.run(
            ["landmarks"], {"images": np.stack(batch)[:, None].astype(np.float32)}
        )
        assert len(got) == count
        assert np.allclose(np.stack(got), want, atol=1e-3)


def test_a_batch_over_the_maximum_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="1 to 2 crops"):
        engine(tiny_model, max_batch_size=2).run(crops(3))


def test_warm_up_runs_a_full_batch(tiny_model: Path) -> None:
    served = engine(tiny_model, max_batch_size=3)
    warmup = served.warm_up(runs=2)
    assert warmup.batch_sizes == (3,) and warmup.runs == 2 and warmup.seconds > 0


@pytest.mark.parametrize("io_binding", [False, True])
def test_mirror_average_answers_the_mean_of_a_crop_and_its_mirror(
    symmetric_tiny_model: Path, io_binding: bool
) -> None:
    plain = engine(symmetric_tiny_model, max_batch_size=4)
    averaged = engine(
        symmetric_tiny_model, max_batch_size=4, io_binding=io_binding, mirror_average=True
    )
    assert averaged.mirror_average and not plain.mirror_average
    batch = crops(3, seed=7)
    flipped = [np.ascontiguousarray(crop[:, ::-1]) for crop in batch]
    want = 0.5 * (np.stack(plain.run(batch)) + mirror_landmarks(np.stack(plain.run(flipped)), 112))
    assert np.allclose(np.stack(averaged.run(batch)), want, atol=1e-4)

    # So a mirrored crop is answered with the mirrored landmarks, which the network alone
    # does not do.
    def gap(served: Engine) -> float:
        there, back = np.stack(served.run(batch)), np.stack(served.run(flipped))
        return float(np.abs(mirror_landmarks(back, 112) - there).max())

    assert gap(averaged) < 1e-3 < 0.5 < gap(plain)


def test_mirror_average_averages_the_confidence_too(mean_shape: np.ndarray, tmp_path: Path) -> None:
    model = varying_confidence_model(tmp_path / "confidence.onnx", mean_shape)
    plain = engine(model, max_batch_size=4)
    averaged = engine(model, max_batch_size=4, mirror_average=True)
    batch = crops(4, seed=3)
    flipped = [np.ascontiguousarray(crop[:, ::-1]) for crop in batch]
    there = np.array([face.confidence for face in plain.run_faces(batch)])  # type: ignore[union-attr]
    back = np.array([face.confidence for face in plain.run_faces(flipped)])  # type: ignore[union-attr]
    got = np.array([face.confidence for face in averaged.run_faces(batch)])  # type: ignore[union-attr]
    assert np.abs(there - back).max() > 1e-3  # the two passes disagree
    assert np.allclose(got, 0.5 * (there + back), atol=1e-5)


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
def test_asking_for_cuda_without_it_stops_start_up(tiny_model: Path) -> None:
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        Engine(Settings(model_path=tiny_model, provider="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu with the CUDA provider and a GPU")
def test_cuda_with_io_binding_matches_cpu(tiny_model: Path) -> None:
    gpu = Engine(Settings(model_path=tiny_model, provider="cuda", max_batch_size=16))
    assert gpu.provider == "cuda" and gpu.use_io_binding
    assert gpu.batch_sizes == (1, 2, 4, 8, 16)
    assert gpu.padded_size(5) == 8
    warmup = gpu.warm_up(runs=1)
    assert warmup.batch_sizes == (1, 2, 4, 8, 16)
    cpu = engine(tiny_model, max_batch_size=16)
    for count in (1, 5, 16):
        batch = crops(count, seed=count)
        assert np.allclose(np.stack(gpu.run(batch)), np.stack(cpu.run(batch)), atol=1e-2)


def test_metadata_round_trips_json_fields(tiny_model: Path) -> None:
    info = read_model_info(metadata_of(tiny_model), tiny_model)
    assert info.accuracy == {}  # exported without an evaluation
    assert info.config is not None and DANConfig.from_dict(info.config) == DANConfig(
        widths=(8, 8, 8, 8), num_stages=2
    )
    assert info.path == tiny_model
