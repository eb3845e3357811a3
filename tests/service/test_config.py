"""service.config: DAN_* variables, defaults, and refusals that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import DEFAULT_MODEL_PATH, Settings, describe_errors

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not checked here")
    return path


def refusal() -> str:
    with pytest.raises(ValidationError) as error:
        Settings()
    return describe_errors(error.value.errors())


def test_the_default_model_is_the_bundled_one_wherever_the_service_starts() -> None:
    assert DEFAULT_MODEL_PATH == REPO / "model" / "dan-300w.onnx"


def test_settings_come_from_dan_variables(
    monkeypatch: pytest.MonkeyPatch, model_file: Path
) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    monkeypatch.setenv("DAN_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("DAN_MAX_WAIT_MS", "0.5")
    monkeypatch.setenv("DAN_PROVIDER", "cpu")
    monkeypatch.setenv("DAN_ACCESS_LOG", "true")
    settings = Settings()
    assert settings.model_path == model_file.resolve()
    assert settings.max_batch_size == 16
    assert settings.max_wait_ms == 0.5
    assert settings.provider == "cpu"
    assert settings.access_log is True
    assert settings.port == 8000 and settings.host == "127.0.0.1"


def test_batch_size_defaults_by_device(model_file: Path) -> None:
    settings = Settings(model_path=model_file)
    assert settings.batch_size_for(gpu=False) == 8
    assert settings.batch_size_for(gpu=True) == 32
    assert Settings(model_path=model_file, max_batch_size=3).batch_size_for(gpu=True) == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "DAN_MAX_BATCH_SIZE",
            "0",
            "DAN_MAX_BATCH_SIZE: Input should be greater than or equal to 1",
        ),
        ("DAN_MAX_WAIT_MS", "-1", "DAN_MAX_WAIT_MS"),
        ("DAN_PORT", "70000", "DAN_PORT"),
        ("DAN_PROVIDER", "gpu", "'auto', 'cpu', 'cuda' or 'tensorrt'"),
        ("DAN_LOG_LEVEL", "loud", "DAN_LOG_LEVEL"),
        ("DAN_MAX_IMAGE_BYTES", "lots", "DAN_MAX_IMAGE_BYTES"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, model_file: Path, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    monkeypatch.setenv(name, value)
    text = refusal()
    assert message in text
    assert f"(got {value!r})" in text


def test_a_missing_model_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(tmp_path / "absent.onnx"))
    text = refusal()
    assert "DAN_MODEL_PATH" in text and "absent.onnx does not exist" in text


def test_unknown_dan_variables_are_refused(
    monkeypatch: pytest.MonkeyPatch, model_file: Path
) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    monkeypatch.setenv("DAN_MAX_BATCH", "4")  # a typo of DAN_MAX_BATCH_SIZE
    assert "unknown setting(s) DAN_MAX_BATCH" in refusal()


def test_inconsistent_values_are_refused(monkeypatch: pytest.MonkeyPatch, model_file: Path) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    monkeypatch.setenv("DAN_MAX_FACES", "10")
    monkeypatch.setenv("DAN_MAX_QUEUE_SIZE", "5")
    assert "DAN_MAX_FACES (10) must be at most DAN_MAX_QUEUE_SIZE (5)" in refusal()
    monkeypatch.delenv("DAN_MAX_FACES")
    monkeypatch.delenv("DAN_MAX_QUEUE_SIZE")
    monkeypatch.setenv("DAN_MAX_QUEUE_WAIT_MS", "3000")
    monkeypatch.setenv("DAN_REQUEST_DEADLINE_MS", "2000")
    assert (
        "DAN_MAX_QUEUE_WAIT_MS (3000) must be at most DAN_REQUEST_DEADLINE_MS (2000)" in refusal()
    )
    monkeypatch.delenv("DAN_MAX_QUEUE_WAIT_MS")
    monkeypatch.delenv("DAN_REQUEST_DEADLINE_MS")
    monkeypatch.setenv("DAN_GPU_FP16", "true")
    assert "DAN_GPU_FP16 needs DAN_PROVIDER=tensorrt" in refusal()


def test_detector_settings_come_from_dan_variables(
    monkeypatch: pytest.MonkeyPatch, model_file: Path
) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    assert Settings().detector == "centerface"  # on by default
    monkeypatch.setenv("DAN_DETECTOR", "none")
    monkeypatch.setenv("DAN_DETECTOR_THRESHOLD", "0.7")
    monkeypatch.setenv("DAN_DETECTOR_MIN_FACE", "32")
    monkeypatch.setenv("DAN_DETECTOR_MAX_SIDE", "960")
    monkeypatch.setenv("DAN_DETECTOR_INIT", "keypoints")
    settings = Settings()
    assert (settings.detector, settings.detector_threshold, settings.detector_min_face) == (
        "none",
        0.7,
        32.0,
    )
    assert (settings.detector_max_side, settings.detector_init) == (960, "keypoints")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DAN_DETECTOR", "haar", "DAN_DETECTOR: Input should be 'centerface' or 'none'"),
        ("DAN_DETECTOR_THRESHOLD", "1", "DAN_DETECTOR_THRESHOLD: Input should be less than 1"),
        ("DAN_DETECTOR_MAX_SIDE", "16", "DAN_DETECTOR_MAX_SIDE: Input should be greater than"),
        ("DAN_DETECTOR_INIT", "mesh", "DAN_DETECTOR_INIT: Input should be 'box' or 'keypoints'"),
    ],
)
def test_bad_detector_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, model_file: Path, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    monkeypatch.setenv(variable, value)
    assert message in refusal()


def test_slow_client_bounds_come_from_dan_variables_and_must_agree(
    monkeypatch: pytest.MonkeyPatch, model_file: Path
) -> None:
    monkeypatch.setenv("DAN_MODEL_PATH", str(model_file))
    defaults = Settings()
    assert (defaults.body_timeout_ms, defaults.header_timeout_s) == (10_000.0, 10.0)
    assert (defaults.keep_alive_s, defaults.max_connections) == (5, 512)
    monkeypatch.setenv("DAN_BODY_TIMEOUT_MS", "2500")
    monkeypatch.setenv("DAN_HEADER_TIMEOUT_S", "4")
    monkeypatch.setenv("DAN_KEEP_ALIVE_S", "3")
    monkeypatch.setenv("DAN_MAX_CONNECTIONS", "300")
    settings = Settings()
    assert (settings.body_timeout_ms, settings.header_timeout_s) == (2500.0, 4.0)
    assert (settings.keep_alive_s, settings.max_connections) == (3, 300)
    monkeypatch.setenv("DAN_KEEP_ALIVE_S", "5")
    assert "DAN_KEEP_ALIVE_S (5) must be at most DAN_HEADER_TIMEOUT_S (4)" in refusal()
    monkeypatch.setenv("DAN_KEEP_ALIVE_S", "3")
    monkeypatch.setenv("DAN_MAX_CONNECTIONS", "128")
    assert "DAN_MAX_CONNECTIONS (128) must be more than DAN_MAX_PENDING_REQUESTS (128)" in (
        refusal()
    )
    monkeypatch.setenv("DAN_MAX_CONNECTIONS", "300")
    monkeypatch.setenv("DAN_BODY_TIMEOUT_MS", "0")
    assert "DAN_BODY_TIMEOUT_MS" in refusal()
