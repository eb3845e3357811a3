"""training.precise_bn: a stage's batch-norm statistics become plain averages over the given
inputs, the rest of the network is left as it was, and the command recomputes a model file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from model.config import DANConfig
from model.dan import DAN
from training.checkpoint import load_checkpoint
from training.export import export
from training.precise_bn import recompute_statistics, stage_batch_norms

REPO = Path(__file__).resolve().parents[2]


def tiny_dan(num_stages: int = 2) -> DAN:
    torch.manual_seed(0)
    return DAN(DANConfig(num_stages=num_stages, widths=(4, 4, 8, 8), fc_units=16))


def inputs(count: int, seed: int) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(4, 1, 112, 112, generator=generator) * 255 for _ in range(count)]


def test_statistics_are_the_average_over_the_inputs_as_the_network_runs_them() -> None:
    model = tiny_dan()
    batches = inputs(3, seed=1)
    first = stage_batch_norms(model, 0)[0]
    fc1 = stage_batch_norms(model, 0)[-1]
    seen: dict[nn.Module, list[Tensor]] = {first: [], fc1: []}
    hooks = [
        m.register_forward_hook(lambda m, args, out: seen[m].append(args[0].detach())) for m in seen
    ]
    dropout_modes: list[bool] = []
    hooks += [
        m.register_forward_pre_hook(lambda m, args: dropout_modes.append(m.training))
        for m in model.modules()
        if isinstance(m, nn.Dropout)
    ]
    stage2_before = {k: v.clone() for k, v in model.stages[1].state_dict().items()}

    assert recompute_statistics(model, [0], lambda: iter(batches)) == 12
    for hook in hooks:
        hook.remove()

    conv_in = torch.cat(seen[first])  # (12, C, H, W): what the first batch norm was given
    per_batch = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen[first]])
    torch.testing.assert_close(first.running_mean, per_batch.mean(0))
    torch.testing.assert_close(first.running_mean, conv_in.mean(dim=(0, 2, 3)))
    variances = torch.stack([x.var(dim=0) for x in seen[fc1]])  # (3, 16) unbiased, per batch
    torch.testing.assert_close(fc1.running_var, variances.mean(0))
    assert dropout_modes == [True] * 3  # the features the stage trains on: dropout on
    assert not model.training and all(bn.momentum == 0.1 for bn in stage_batch_norms(model, 0))
    for key, value in model.stages[1].state_dict().items():
        assert torch.equal(value, stage2_before[key]), f"stage 2's {key} changed"


def test_a_later_stage_sees_the_earlier_stage_as_recomputed_and_no_input_is_refused() -> None:
    model = tiny_dan()
    batches = inputs(2, seed=2)
    calls: list[int] = []

    def forward(x: Tensor, num_stages: int) -> object:
        calls.append(num_stages)
        return model(x, num_stages=num_stages)

    recompute_statistics(model, [1, 0], lambda: iter(batches), forward)
    assert calls == [1, 1, 2, 2]  # stage 1 first, then stage 2 through it
    assert all(int(bn.num_batches_tracked) == 2 for bn in stage_batch_norms(model, 1))
    with pytest.raises(ValueError, match="at least one batch"):
        recompute_statistics(model, [0], lambda: iter([]))


def test_recomputed_statistics_do_not_depend_on_the_saved_ones() -> None:
    batches = inputs(2, seed=3)
    a, b = tiny_dan(), tiny_dan()
    for bn in stage_batch_norms(b, 0):
        bn.running_mean.fill_(50.0)
        bn.running_var.fill_(9.0)
    for model in (a, b):
        torch.manual_seed(1)  # the same dropout masks
        recompute_statistics(model, [0], lambda: iter(batches))
    for x, y in zip(stage_batch_norms(a, 0), stage_batch_norms(b, 0), strict=True):
        torch.testing.assert_close(x.running_mean, y.running_mean)
        torch.testing.assert_close(x.running_var, y.running_var)


@pytest.mark.slow
def test_the_command_recomputes_an_exported_model(mini_300w: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "tiny.onnx"
    export(tiny_dan(num_stages=1), onnx_path)
    flags = [
        "--data-root", str(mini_300w), "--batch-size", "4", "--val-count", "2",
        "--norm-crops-per-image", "1",
    ]  # fmt: skip
    out = tmp_path / "precise.pt"
    done = subprocess.run(
        [sys.executable, "-m", "training.precise_bn", str(onnx_path), str(out), "--batches", "2",
         *flags],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["images_per_stage"] == 8 and set(report["after"]) == {"stage1_io", "stage1_ip"}
    recomputed = load_checkpoint(out)
    assert recomputed["precise_bn"]["images_per_stage"] == 8
    tracked = {int(v) for k, v in recomputed["model"].items() if k.endswith("num_batches_tracked")}
    assert tracked == {2}  # averaged over the two batches, not carried over
    assert recomputed["validation"] == report["after"]

    refused = subprocess.run(
        [sys.executable, "-m", "training.precise_bn", str(onnx_path), str(out), "--batches", "0"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "argument --batches: expected a whole number >= 1, got '0'" in refused.stderr
