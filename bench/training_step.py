"""Stage-2 training throughput from fresh crops against a crop pool, as a ratio.

From fresh crops every stage-2 step runs the frozen stage 1 first; from a crop pool
(``--crop-pool``, ``training.crop_pool``) its outputs were computed once. This times
both in one process, in alternating rounds of the same number of steps of the same
model (``training.train.training_step``, crop making included), so a busy machine
slows both alike; the figure to quote is the median ratio over rounds. The pool's
one-off cost (making the crops, running stage 1 over them) is reported apart.

    python -m bench.training_step @training/recipes/dan-300w-half.args \
        --data-root ../shared/data/300w --steps 10 --rounds 3

Any ``training.train`` flag sets the model and the batch (``--widths``, ``--batch-size``,
``--init``). Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.arguments import positive_int
from training.augment import CropSampler
from training.config import TrainConfig, parse_config
from training.crop_pool import build_crop_pool
from training.train import (
    Given,
    appearance_of,
    batches,
    build_or_resume_model,
    frozen_stages,
    load_data,
    perturbation_of,
    training_step,
    use_channels_last,
)


def measure(cfg: TrainConfig, steps: int, rounds: int, per_face: int) -> dict[str, Any]:
    """Images/s of stage-2 steps from fresh crops and from a pool, per round, and the ratios."""
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cpu")
    data = load_data(cfg)
    model, _ = build_or_resume_model(cfg, data)
    if model.config.num_stages < 2:
        raise SystemExit(f"expected a model of 2 or more stages, got {model.config.num_stages}")
    if use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.freeze_stage(0, True)
    model.freeze_stage(1, False)
    model.train()
    optimizer = torch.optim.Adam(model.stage_parameters(1), lr=cfg.lr)
    size = model.config.image_size
    mean_shape = model.mean_shape.double().numpy()
    sampler = CropSampler(
        data.train, mean_shape, size, perturbation_of(cfg), cfg.seed, appearance_of(cfg)
    )
    started = time.perf_counter()
    pool = build_crop_pool(sampler, per_face, cfg.seed + 1, frozen_stages(model, cfg, device, 1))
    pool_s = time.perf_counter() - started

    # The trainer's own batches: fresh crops, or pool rows carrying stage 1's outputs.
    from_crops = batches(sampler, cfg.batch_size, None, 1)
    from_pool = batches(sampler, cfg.batch_size, pool, 1)

    def timed(source: Iterator[tuple[np.ndarray, np.ndarray, Given | None, float]]) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            images, targets, given, _ = next(source)
            training_step(model, optimizer, images, targets, given, cfg, device, 2)
        return steps * cfg.batch_size / (time.perf_counter() - t0)

    timed(from_crops), timed(from_pool)  # warm-up: one-off allocations, oneDNN kernel choice
    fresh, pooled = [], []
    for _ in range(rounds):
        fresh.append(timed(from_crops))
        pooled.append(timed(from_pool))
    ratios = [p / f for p, f in zip(pooled, fresh, strict=True)]
    return {
        "widths": list(model.config.widths),
        "batch_size": cfg.batch_size,
        "threads": torch.get_num_threads(),
        "steps_per_round": steps,
        "fresh_img_s": [round(x, 1) for x in fresh],
        "pool_img_s": [round(x, 1) for x in pooled],
        "ratio_median": round(statistics.median(ratios), 3),
        "pool_crops": len(pool),
        "pool_build_s": round(pool_s, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Other flags (and @args files) are training.train's.",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=10, help="training steps per timed round"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="rounds of each, alternating"
    )
    parser.add_argument(
        "--per-face", type=positive_int, default=1, help="crops per training face in the timed pool"
    )
    parser.add_argument("--json-out", type=Path, help="also write the result here as JSON")
    own, rest = parser.parse_known_args(argv)
    cfg = parse_config(rest)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result = measure(cfg, own.steps, own.rounds, own.per_face)
    text = json.dumps(result)
    print(text)
    if own.json_out is not None:
        own.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
