"""DAN_DETECTOR_PRECISION: which CenterFace graph the service loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.detectors import centerface
from service.detectors.factory import build_initialiser
from service.errors import DetectorError


def test_auto_is_float32_without_the_int8_graph_and_int8_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(centerface, "has_int8_weights", lambda: False)
    assert centerface.resolve_precision("auto") == "float32"
    assert centerface.resolve_precision("float32") == "float32"
    with pytest.raises(DetectorError, match=r"bench\.centerface_int8"):
        centerface.resolve_precision("int8")


def test_auto_takes_the_int8_graph_on_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(centerface, "has_int8_weights", lambda: True)
    assert centerface.resolve_precision("auto") == "int8"
    assert centerface.resolve_precision("auto", on_gpu=True) == "float32"
    assert centerface.resolve_precision("float32") == "float32"


def test_the_service_builds_the_detector_it_is_told_to(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    loaded: list[str] = []
    real = centerface.load_weights

    def spy(name: str = centerface.WEIGHTS_FILE) -> bytes:
        loaded.append(name)
        return real(centerface.WEIGHTS_FILE)  # the float32 graph stands in for both

    monkeypatch.setattr(centerface, "load_weights", spy)
    monkeypatch.setattr(centerface, "has_int8_weights", lambda: True)
    for precision, file in (("float32", "centerface.onnx"), ("auto", "centerface.int8.onnx")):
        settings = Settings(model_path=tiny_model, detector_precision=precision)
        initialiser = build_initialiser(settings, "cpu")
        assert initialiser.detector.precision == ("int8" if precision == "auto" else precision)  # type: ignore[attr-defined]
        assert loaded[-1] == file
