"""training.weight_average: the average follows the model at the stated rate and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from training.weight_average import WeightAverage


def tiny_dan() -> DAN:
    torch.manual_seed(0)
    return DAN(DANConfig(widths=(4, 4, 8, 8), num_stages=1))


def moved(model: DAN, by: float) -> None:
    """Change every weight and running statistic, and count a batch, as a training step does."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(by)
            else:
                tensor.add_(1)


def test_the_average_moves_by_the_warm_up_decay_then_by_the_set_one() -> None:
    model = tiny_dan()
    average = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in average.model.state_dict().items()}
    moved(model, 1.0)
    average.update()  # first update: decay min(0.9, 2 / 11)
    first = 1 - 2 / 11
    for key, value in average.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, start[key] + first, msg=key)
        else:  # integer buffers (batch counters) are the model's, not averaged
            assert torch.equal(value, model.state_dict()[key]), key
    for _ in range(20):
        average.update()  # the model stays put: the average approaches it
    assert average.updates == 21 and min(0.9, 22 / 31) == 22 / 31
    average.decay = 0.5
    gap = {k: model.state_dict()[k] - v for k, v in average.model.state_dict().items()}
    average.update()  # now decay min(0.5, 23 / 32) = 0.5: half the gap closes
    for key, value in average.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(model.state_dict()[key] - value, gap[key] * 0.5, msg=key)


def test_the_average_is_a_separate_frozen_model_in_eval_mode() -> None:
    model = tiny_dan()
    average = WeightAverage(model, decay=0.99)
    assert not average.model.training
    assert not any(p.requires_grad for p in average.model.parameters())
    moved(model, 1.0)
    assert not torch.equal(
        average.model.state_dict()["stages.0.fc2.weight"], model.state_dict()["stages.0.fc2.weight"]
    )


def test_a_resumed_average_continues_as_the_uninterrupted_one() -> None:
    model = tiny_dan()
    straight = WeightAverage(model, decay=0.95)
    moved(model, 0.5)
    straight.update()
    resumed = WeightAverage(model, decay=0.95, saved=straight.state())
    assert resumed.updates == 1
    moved(model, 0.25)
    straight.update()
    resumed.update()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, float("nan")])
def test_a_decay_outside_zero_to_one_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(tiny_dan(), decay=decay)
