"""The range-checked argparse types, alone and in the command lines that use them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from training import confidence, confidence_study, export, pack
from training.arguments import (
    fraction,
    jpeg_quality,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    positive_ints,
    real_in,
    whole_in,
)


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (positive_int, "1", 1),
        (positive_int, "64", 64),
        (non_negative_int, "0", 0),
        (positive_float, "1e-3", 1e-3),
        (non_negative_float, "0", 0.0),
        (fraction, "0", 0.0),
        (fraction, "1", 1.0),
        (fraction, "0.73", 0.73),
        (jpeg_quality, "100", 100),
        (whole_in(16, 4096), "16", 16),
        (real_in(1, 10), "2.5", 2.5),
        (positive_ints, "1,2, 4,", (1, 2, 4)),
        (positive_ints, "8", (8,)),
    ],
)
def test_values_in_range_are_taken(kind: Callable[[str], Any], text: str, value: object) -> None:
    assert kind(text) == value


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (positive_int, "0", "expected a whole number >= 1, got '0'"),
        (positive_int, "2.5", "expected a whole number >= 1, got '2.5'"),
        (positive_int, "many", "expected a whole number >= 1, got 'many'"),
        (non_negative_int, "-1", "expected a whole number >= 0, got '-1'"),
        (positive_float, "0", "expected a number in (0, inf), got '0'"),
        (positive_float, "inf", "expected a number in (0, inf), got 'inf'"),
        (positive_float, "nan", "expected a number in (0, inf), got 'nan'"),
        (non_negative_float, "-0.5", "expected a number in [0, inf), got '-0.5'"),
        (fraction, "1.01", "expected a number in [0, 1], got '1.01'"),
        (fraction, "-0.01", "expected a number in [0, 1], got '-0.01'"),
        (jpeg_quality, "101", "expected a whole number in [1, 100], got '101'"),
        (jpeg_quality, "0", "expected a whole number in [1, 100], got '0'"),
        (whole_in(16, 4096), "8", "expected a whole number in [16, 4096], got '8'"),
        (real_in(1, 10), "0.5", "expected a number in [1, 10], got '0.5'"),
        (real_in(1, 10), "wide", "expected a number in [1, 10], got 'wide'"),
        (positive_ints, "1,0", "expected comma-separated whole numbers >= 1, got '1,0'"),
        (positive_ints, "", "expected comma-separated whole numbers >= 1, got ''"),
        (positive_ints, "2,x", "expected comma-separated whole numbers >= 1, got '2,x'"),
    ],
)
def test_values_out_of_range_are_refused_with_what_was_expected_and_what_came(
    kind: Callable[[str], Any], text: str, expected: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        kind(text)
    assert str(refused.value) == expected


def test_a_command_line_names_the_flag_it_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        confidence.get_args_parser().parse_args(["--model", "m", "--out", "o", "--epochs", "-3"])
    assert stopped.value.code == 2
    assert "argument --epochs: expected a whole number >= 1, got '-3'" in capsys.readouterr().err


@pytest.mark.parametrize("main", [confidence.main, confidence_study.main])
def test_the_confidence_commands_refuse_a_bad_error_below_the_good_one(
    main: Callable[[list[str]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--model", "missing.onnx", "--good", "0.09", "--bad", "0.08"]
    with pytest.raises(SystemExit) as stopped:
        main([*flags, "--out", "o.onnx"] if main is confidence.main else flags)
    assert stopped.value.code == 2  # refused before the (missing) model is read
    assert "--bad must be above --good" in capsys.readouterr().err


def test_export_refuses_an_opset_without_grid_sample(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        export.main(["missing.pt", "out.onnx", "--opset", "15"])
    assert stopped.value.code == 2
    assert f"--opset must be >= {export.MIN_OPSET} (GridSample), got 15" in capsys.readouterr().err


def test_pack_refuses_a_size_or_margin_out_of_its_range(capsys: pytest.CaptureFixture[str]) -> None:
    for flag, value, expected in [
        ("--size", "8", "expected a whole number in [16, 4096], got '8'"),
        ("--margin", "12", "expected a number in [1, 10], got '12'"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            pack.main(["--data-root", "missing", "--out", "o", flag, value])
        assert stopped.value.code == 2  # refused before the (missing) data is read
        assert f"argument {flag}: {expected}" in capsys.readouterr().err
