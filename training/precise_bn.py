"""Batch-norm statistics recomputed as plain averages over many training batches ("precise
BN", Wu & Johnson 2021), in place of the momentum average that training leaves in a checkpoint:
an experiment tool, measured and not adopted.

Why it was tried: with momentum 0.1 and batches of 32 the saved statistics average about the
last 320 crops, and stage 1's validation error moved between 4.16% and 4.55% across checkpoints
taken at learning rates below 1e-5, where the weights hardly move. What it gave
(``model/EXPERIMENTS.md``): on the released model, recomputing both stages over 4,800 crops
each moved the 300-W common error from 4.04% to 4.16% for stage 1 and from 3.62% to 3.99% for
both stages. The running averages stay.

    python -m training.precise_bn MODEL.onnx|CHECKPOINT.pt OUT.pt --batches 150 \
        @training/recipes/dan-300w-half.args --data-root ../shared/data/300w

recomputes every stage of a trained model over crops drawn as the training flags after the two
paths say (data, perturbations, batch size, precision), validates it before and after on the
run's held-out images, and writes a checkpoint that ``training.export`` and ``--init`` take.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from model.dan import DAN
from training.arguments import positive_int


def stage_batch_norms(model: DAN, stage: int) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms of stage ``stage`` (0-based), its connection layers included."""
    return [
        m
        for part in model.stage_modules(stage)
        for m in part.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


@torch.no_grad()
def recompute_statistics(
    model: DAN,
    stages: Sequence[int],
    inputs: Callable[[], Iterable[Tensor]],
    forward: Callable[[Tensor, int], object] | None = None,
) -> int:
    """Replace the running statistics of ``stages`` (0-based) by averages over ``inputs()``.

    Stages are done in order, each over a fresh ``inputs()``, since a stage's statistics
    change what the next one sees. The stage runs as it trains (dropout on: the statistics
    its later layers were trained with), every other stage as at inference.
    ``forward(x, num_stages)`` runs the model (default: plain ``model(x, num_stages=...)``;
    the command passes its autocast). Returns the number of input images averaged per
    stage; the model is left in eval mode.
    """
    run = forward or (lambda x, n: model(x, num_stages=n))
    model.eval()
    seen = 0
    for stage in sorted(stages):
        norms = stage_batch_norms(model, stage)
        saved_momentum = [bn.momentum for bn in norms]
        for part in model.stage_modules(stage):
            part.train()
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over every batch
        seen = 0
        for x in inputs():
            run(x, stage + 1)
            seen += len(x)
        for bn, momentum in zip(norms, saved_momentum, strict=True):
            bn.momentum = momentum
        model.eval()
        if seen == 0:
            raise ValueError("recompute_statistics needs at least one batch of inputs")
    return seen


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Every other flag is a training.train flag choosing the crops and the held-out "
        "validation images (e.g. @training/recipes/dan-300w-half.args --data-root ...).",
    )
    p.add_argument(
        "model", type=Path, help="trained model: a checkpoint (.pt) or an export (.onnx)"
    )
    p.add_argument("output", type=Path, help="checkpoint (.pt) to write")
    p.add_argument(
        "--batches",
        type=positive_int,
        default=300,
        help="training batches (of --batch-size crops) averaged per stage (>= 1)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    from training import train
    from training.augment import CropSampler
    from training.checkpoint import load_weights, save_checkpoint
    from training.config import parse_config

    args, rest = get_args_parser().parse_known_args(argv)
    cfg = parse_config(rest)
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config, state = load_weights(args.model)
    model = DAN(config)
    model.load_state_dict(state, strict=False)  # an export carries no num_batches_tracked
    device = torch.device("cpu")
    if train.use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = train.load_data(cfg)
    mean_shape = model.mean_shape.double().numpy()
    val = train.validation_set(data.val, mean_shape, config.image_size)
    stages = config.num_stages
    before = train.validate(model, val, cfg, device, stages)
    sampler = CropSampler(
        data.train,
        mean_shape,
        config.image_size,
        train.perturbation_of(cfg),
        cfg.seed + 3,
        train.appearance_of(cfg),
    )

    def batches() -> Iterator[Tensor]:
        sampler.rng = np.random.default_rng(cfg.seed + 3)  # every stage: the same crops
        for _ in range(args.batches):
            images, _ = sampler.sample(cfg.batch_size)
            yield train.to_input(images, cfg, device)

    def forward(x: Tensor, num_stages: int) -> object:
        with train.autocast_context(cfg, device):
            return model(x, num_stages=num_stages)

    seen = recompute_statistics(model, range(stages), batches, forward)
    after = train.validate(model, val, cfg, device, stages)
    save_checkpoint(
        args.output,
        model,
        precise_bn={"source": str(args.model), "images_per_stage": seen},
        validation=after,
        train_config=cfg.to_dict(),
    )
    report = {
        "model": str(args.model),
        "images_per_stage": seen,
        "before": before,
        "after": after,
        "output": str(args.output),
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
