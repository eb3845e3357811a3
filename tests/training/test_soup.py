"""training.soup: the average of models of one start is the mean of their stages' weights, models
of different starts or shapes are refused, and the command validates and writes the average."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from training.checkpoint import load_checkpoint, save_checkpoint
from training.export import export
from training.soup import average_weights

REPO = Path(__file__).resolve().parents[2]
CONFIG = DANConfig(num_stages=2, widths=(4, 4, 8, 8), fc_units=16)


def tiny_dan(seed: int, config: DANConfig = CONFIG) -> DAN:
    torch.manual_seed(seed)
    model = DAN(config)
    with torch.no_grad():  # as training would: every weight and statistic moves
        for name, tensor in model.state_dict().items():
            if name.startswith(("stages.", "connections.")) and tensor.is_floating_point():
                tensor.add_(0.01 * torch.rand_like(tensor))
    return model


def test_the_average_is_the_mean_of_every_stage_weight_and_statistic() -> None:
    models = [tiny_dan(seed) for seed in (1, 2, 3)]
    states = [m.state_dict() for m in models]
    average = average_weights(CONFIG, states)
    assert set(average) == set(states[0])
    for key, value in average.items():
        if value.is_floating_point():
            expected = (states[0][key] + states[1][key] + states[2][key]) / 3
            torch.testing.assert_close(value, expected, msg=key)
        else:
            assert torch.equal(value, states[0][key]), key
    for key in ("stages.1.fc2.weight", "connections.0.feature_image.dense.weight"):
        assert not torch.equal(average[key], states[0][key]), key  # stage 2 and its connection


def test_an_export_without_batch_counters_averages_with_a_checkpoint() -> None:
    a, b = tiny_dan(1).state_dict(), tiny_dan(2).state_dict()
    exported = {k: v for k, v in b.items() if not k.endswith("num_batches_tracked")}
    average = average_weights(CONFIG, [exported, a])
    counters = [k for k in a if k.endswith("num_batches_tracked")]
    assert counters and all(torch.equal(average[k], a[k]) for k in counters)


def test_models_of_another_start_another_shape_or_one_alone_are_refused() -> None:
    a, b = tiny_dan(1).state_dict(), tiny_dan(2).state_dict()
    other_start = dict(b, mean_shape=b["mean_shape"] + 1.0)
    with pytest.raises(ValueError, match="mean_shape differs between the models"):
        average_weights(CONFIG, [a, other_start])
    wider = tiny_dan(2, DANConfig(num_stages=2, widths=(4, 4, 8, 16), fc_units=16)).state_dict()
    with pytest.raises(ValueError, match=r"expected shape \(.*\) in every model, got"):
        average_weights(CONFIG, [a, wider])
    missing = {k: v for k, v in b.items() if k != "stages.1.fc2.weight"}
    with pytest.raises(ValueError, match="missing from 1 of the models"):
        average_weights(CONFIG, [a, missing])
    with pytest.raises(ValueError, match="at least 2 models, got 1"):
        average_weights(CONFIG, [a])


@pytest.mark.slow
def test_the_command_validates_each_model_and_writes_their_average(
    mini_300w: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.onnx", tmp_path / "second.pt"
    export(tiny_dan(1), first)
    save_checkpoint(second, tiny_dan(2))
    out = tmp_path / "soup.pt"
    flags = ["--data-root", str(mini_300w), "--val-count", "2", "--norm-crops-per-image", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "training.soup", str(out), "--model", str(first), "--model", str(second),
         *flags],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout.splitlines()[-1])
    assert list(report["models"]) == [str(first), str(second)]
    assert set(report["average"]) == {"stage1_io", "stage1_ip", "stage2_io", "stage2_ip"}
    saved = load_checkpoint(out)
    assert saved["soup"]["models"] == [str(first), str(second)]
    assert saved["validation"] == report["average"]
    key = next(k for k, v in saved["model"].items() if k.startswith("stages.1.") and v.dim() > 1)
    expected = (tiny_dan(1).state_dict()[key] + tiny_dan(2).state_dict()[key]) / 2
    torch.testing.assert_close(saved["model"][key], expected)

    refused = subprocess.run(
        [sys.executable, "-m", "training.soup", str(out), "--model", str(first)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "expected at least 2 models to average, got 1" in refused.stderr
