"""training.checkpoint: a checkpoint round-trips, and ``--init`` copies all or chosen stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from training.checkpoint import init_from, model_from_checkpoint, save_checkpoint, stage_keys

TINY = DANConfig(widths=(4, 4, 4, 4), fc_units=16, num_stages=2)


def trained_like(seed: int) -> DAN:
    """A tiny DAN whose every tensor (weights, buffers) holds values of its own seed."""
    torch.manual_seed(seed)
    model = DAN(TINY)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    return model


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.equal(a, b))


@pytest.mark.parametrize(
    ("key", "stage"),
    [
        ("stages.0.fc2.weight", 1),
        ("stages.1.features.0.weight", 2),
        ("connections.0.input_norm.running_mean", 2),
        ("mean_shape", None),
        ("std_image", None),
    ],
)
def test_every_key_belongs_to_the_stage_it_feeds(key: str, stage: int | None) -> None:
    model = DAN(TINY)
    owners = [s for s in (1, 2) if key in stage_keys(model, [s])]
    assert owners == ([] if stage is None else [stage])


def test_a_checkpoint_round_trips(tmp_path: Path) -> None:
    source = trained_like(1)
    save_checkpoint(tmp_path / "a.pt", source, step=3)
    back = model_from_checkpoint(tmp_path / "a.pt")
    for key, tensor in source.state_dict().items():
        assert same(back.state_dict()[key], tensor), key


def test_init_copies_every_stage_by_default(tmp_path: Path) -> None:
    source = trained_like(1)
    save_checkpoint(tmp_path / "a.pt", source)
    model = trained_like(2)
    init_from(model, tmp_path / "a.pt")
    for key, tensor in source.state_dict().items():
        assert same(model.state_dict()[key], tensor), key


def test_init_stages_copies_those_stages_and_the_models_buffers_only(tmp_path: Path) -> None:
    source = trained_like(1)
    save_checkpoint(tmp_path / "a.pt", source)
    fresh = trained_like(2)
    kept = {k: v.clone() for k, v in fresh.state_dict().items()}
    init_from(fresh, tmp_path / "a.pt", stages=(1,))
    copied = fresh.state_dict()
    stage_2 = stage_keys(fresh, [2])
    for key, tensor in source.state_dict().items():
        if key in stage_2:  # the new stage 2 and the connection into it keep their own
            assert same(copied[key], kept[key]), key
            assert not tensor.is_floating_point() or not same(copied[key], tensor), key
        else:  # stage 1 and the mean shape / normalisation images it was trained with
            assert same(copied[key], tensor), key
