"""Training configuration: one dataclass, one argparse parser with help on every flag."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    data_root: Path = Path("../shared/data/300w")
    box_file: Path | None = None
    output_dir: Path = Path("runs/dan")
    train_boxes: str = "landmarks"
    val_boxes: str = "file"
    val_count: int = 100
    seed: int = 0
    # network
    num_stages: int = 2
    widths: tuple[int, ...] = (64, 128, 256, 512)
    heatmap_support: str = "radius"
    # schedule: phases "stage 1", ..., "stage N", then optional end-to-end fine-tuning
    stages: tuple[int, ...] = (1, 2)
    stage_steps: tuple[int, ...] = (20000, 20000)
    stage_minutes: tuple[float, ...] = ()
    finetune_steps: int = 0
    finetune_minutes: float = 0.0
    finetune_lr: float = 1e-4
    batch_size: int = 64
    lr: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.0
    patience: int = 0
    # augmentation
    rotation_sd: float = 20.0
    scale_sd: float = 0.25
    translation_sd: float = 0.1
    mirror: bool = True
    norm_crops_per_image: int = 2
    # bookkeeping
    val_every: int = 200
    amp: str = "auto"
    channels_last: str = "auto"
    threads: int = 0
    init: Path | None = None
    resume: Path | None = None
    progress: bool = True
    log_level: str = "INFO"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()
        }


def get_args_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        description="Train DAN on 300-W stage by stage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a("--data-root", type=Path, default=d.data_root, help="300-W root in the official layout")
    a(
        "--box-file",
        type=Path,
        default=None,
        help="detector box file (boxes.csv or .mat); default: found under --data-root",
    )
    a("--output-dir", type=Path, default=d.output_dir, help="where checkpoints and logs go")
    a(
        "--train-boxes",
        choices=("landmarks", "file"),
        default=d.train_boxes,
        help="face boxes of the training crops (paper: landmarks)",
    )
    a(
        "--val-boxes",
        choices=("landmarks", "file"),
        default=d.val_boxes,
        help="face boxes of the validation crops (paper: detector boxes from the file)",
    )
    a("--val-count", type=int, default=d.val_count, help="training images held out for validation")
    a(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the validation split, the augmentation and the initialisation",
    )
    a("--num-stages", type=int, default=d.num_stages, help="stages of the network")
    a(
        "--widths",
        type=int,
        nargs="+",
        default=list(d.widths),
        help="conv widths of a stage (paper: 64 128 256 512)",
    )
    a(
        "--heatmap-support",
        choices=("radius", "window"),
        default=d.heatmap_support,
        help="heatmap support: paper's radius 16 or reference code's 17x17 window",
    )
    a(
        "--stages",
        type=int,
        nargs="+",
        default=list(d.stages),
        help="stages to train, in order (1-based); earlier stages are frozen while a later one trains",
    )
    a(
        "--stage-steps",
        type=int,
        nargs="+",
        default=list(d.stage_steps),
        help="maximum optimizer steps of each trained stage",
    )
    a(
        "--stage-minutes",
        type=float,
        nargs="*",
        default=list(d.stage_minutes),
        help="wall-clock budget of each trained stage in minutes (the schedule anneals within it)",
    )
    a(
        "--finetune-steps",
        type=int,
        default=d.finetune_steps,
        help="steps of end-to-end fine-tuning of all stages after the stage-wise phases (0: none)",
    )
    a(
        "--finetune-minutes",
        type=float,
        default=d.finetune_minutes,
        help="wall-clock budget of the fine-tuning in minutes (0: steps only)",
    )
    a(
        "--finetune-lr",
        type=float,
        default=d.finetune_lr,
        help="peak learning rate of the fine-tuning",
    )
    a("--batch-size", type=int, default=d.batch_size, help="faces per optimizer step")
    a("--lr", type=float, default=d.lr, help="Adam learning rate (peak, with a schedule)")
    a(
        "--schedule",
        choices=("constant", "cosine"),
        default=d.schedule,
        help="learning-rate schedule within each phase",
    )
    a(
        "--warmup-steps",
        type=int,
        default=d.warmup_steps,
        help="linear warm-up steps at the start of each phase",
    )
    a(
        "--min-lr-ratio",
        type=float,
        default=d.min_lr_ratio,
        help="final learning rate of the cosine schedule, as a fraction of the peak",
    )
    a("--weight-decay", type=float, default=d.weight_decay, help="Adam weight decay")
    a(
        "--patience",
        type=int,
        default=d.patience,
        help="stop a phase after this many validations without improvement (0: never)",
    )
    a(
        "--rotation-sd",
        type=float,
        default=d.rotation_sd,
        help="sd of the rotation perturbation in degrees",
    )
    a("--scale-sd", type=float, default=d.scale_sd, help="sd of the scale perturbation (mean 1)")
    a(
        "--translation-sd",
        type=float,
        default=d.translation_sd,
        help="sd of the translation perturbation, as a fraction of the face's width/height",
    )
    a("--no-mirror", dest="mirror", action="store_false", help="do not mirror training faces")
    a(
        "--norm-crops-per-image",
        type=int,
        default=d.norm_crops_per_image,
        help="perturbed crops per image used to compute the mean and std images",
    )
    a("--val-every", type=int, default=d.val_every, help="validate every this many steps")
    a(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default=d.amp,
        help="mixed precision: auto = fp16 on CUDA, bf16 on CPUs with native bf16 (AVX-512 BF16/AMX), else fp32",
    )
    a(
        "--channels-last",
        choices=("auto", "on", "off"),
        default=d.channels_last,
        help="channels-last memory format: auto = on with mixed precision (measured faster), off in fp32 (measured slower on AVX2)",
    )
    a("--threads", type=int, default=d.threads, help="torch CPU threads (0: all cores)")
    a(
        "--init",
        type=Path,
        default=None,
        help="start from these weights: a checkpoint (.pt) or an exported model (.onnx)",
    )
    a("--resume", type=Path, default=None, help="resume an interrupted run from its last.pt")
    a("--no-progress", dest="progress", action="store_false", help="no progress bar")
    a(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=d.log_level,
        help="logging level",
    )
    return p


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    ns = get_args_parser().parse_args(argv)
    values = vars(ns)
    for key in ("widths", "stages", "stage_steps", "stage_minutes"):
        values[key] = tuple(values[key])
    cfg = TrainConfig(**values)
    if len(cfg.stage_steps) != len(cfg.stages):
        raise SystemExit(
            f"--stage-steps needs one value per --stages entry ({len(cfg.stages)}), got {len(cfg.stage_steps)}"
        )
    if cfg.stage_minutes and len(cfg.stage_minutes) != len(cfg.stages):
        raise SystemExit(
            f"--stage-minutes needs one value per --stages entry ({len(cfg.stages)}), got {len(cfg.stage_minutes)}"
        )
    if any(not 1 <= s <= cfg.num_stages for s in cfg.stages):
        raise SystemExit(f"--stages must be in [1, {cfg.num_stages}], got {list(cfg.stages)}")
    return cfg
