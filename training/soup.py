"""Uniform averages of the weights of trained models of one lineage ("model soups", Wortsman et
al. 2022): an experiment tool, measured and not adopted.

Why it was tried: every run since the release continues the same weights, so its checkpoints lie
in one basin, and averaging fine-tuned models of one start often beats each of them at no cost
at inference. What it gave (``model/EXPERIMENTS.md``): averages of the release and the later
runs' best checkpoints beat their best member on validation by under 0.01 points, or lost to
it: within the noise of 100 validation faces, so releases stay single runs.

    python -m training.soup OUT.pt --model MODEL.onnx|CHECKPOINT.pt --model ... \
        @training/recipes/dan-300w-half.args --data-root ../shared/data/300w

validates each model and their average on the run's held-out images (the training flags after
the paths choose them), prints the numbers as JSON and writes the average as a checkpoint that
``training.export`` and ``--init`` take.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from model.config import DANConfig
from model.dan import DAN
from training.checkpoint import stage_keys


def average_weights(config: DANConfig, states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """The uniform average of ``states`` (state dicts of one ``config``'s DAN).

    Every stage's floating-point weights and batch-norm statistics are averaged; the batch
    counters are the first state's (an export has none: they are then left out). The model's
    own buffers (mean shape, normalisation images) must be equal in all: a stage trained with
    other ones is from another lineage, and its weights do not mean the same thing.
    """
    if len(states) < 2:
        raise ValueError(f"an average needs at least 2 models, got {len(states)}")
    model = DAN(config)
    own = model.state_dict()
    in_stages = stage_keys(model, range(1, config.num_stages + 1))
    averaged: dict[str, Tensor] = {}
    for key, reference in own.items():
        values = [s[key] for s in states if key in s]
        if not reference.is_floating_point():
            if values:
                averaged[key] = values[0]
            continue
        if len(values) != len(states):
            raise ValueError(f"{key} is missing from {len(states) - len(values)} of the models")
        shapes = {tuple(v.shape) for v in values}
        if shapes != {tuple(reference.shape)}:
            raise ValueError(
                f"{key}: expected shape {tuple(reference.shape)} in every model, got {shapes}"
            )
        if key not in in_stages and any(not torch.equal(v, values[0]) for v in values[1:]):
            raise ValueError(
                f"{key} differs between the models: they were not trained from one start "
                "(the mean shape and normalisation images must be the same)"
            )
        averaged[key] = (torch.stack([v.double() for v in values]).mean(0)).to(reference.dtype)
    return averaged


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Every other flag is a training.train flag choosing the held-out validation "
        "images (e.g. @training/recipes/dan-300w-half.args --data-root ...).",
    )
    p.add_argument("output", type=Path, help="checkpoint (.pt) to write: the average")
    p.add_argument(
        "--model",
        dest="models",
        metavar="MODEL",
        type=Path,
        action="append",
        default=[],
        help="a trained model to average, a checkpoint (.pt) or an export (.onnx); give it once "
        "per model, at least twice, all of one configuration and lineage",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    from training import train
    from training.checkpoint import load_weights, save_checkpoint
    from training.config import parse_config

    args, rest = get_args_parser().parse_known_args(argv)
    if len(args.models) < 2:
        raise SystemExit(f"expected at least 2 models to average, got {len(args.models)}")
    cfg = parse_config(rest)
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    loaded = [load_weights(path) for path in args.models]
    config = loaded[0][0]
    for path, (other, _) in zip(args.models[1:], loaded[1:], strict=True):
        if other != config:
            raise SystemExit(
                f"{path}: expected the configuration of {args.models[0]} ({config}), got {other}"
            )
    try:
        average = average_weights(config, [state for _, state in loaded])
    except ValueError as e:
        raise SystemExit(str(e)) from None

    device = torch.device("cpu")
    model = DAN(config)
    if train.use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = train.load_data(cfg)

    model.load_state_dict(average, strict=False)  # the mean shape all of them share
    val = train.validation_set(data.val, model.mean_shape.double().numpy(), config.image_size)

    def validation(state: Mapping[str, Tensor]) -> dict[str, float]:
        model.load_state_dict(state, strict=False)  # an export carries no batch counters
        return train.validate(model, val, cfg, device, config.num_stages)

    members = {
        str(path): validation(state) for path, (_, state) in zip(args.models, loaded, strict=True)
    }
    averaged = validation(average)
    save_checkpoint(
        args.output,
        model,
        soup={"models": [str(path) for path in args.models]},
        validation=averaged,
        train_config=cfg.to_dict(),
    )
    report = {"models": members, "average": averaged, "output": str(args.output)}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
