"""Training configuration: one typed dataclass, one argparse parser with help on every flag.

``TrainConfig.check`` holds every range and consistency rule, so a config built
in code is held to the same rules as one parsed from the command line. Flags can
also come from an args file (``@training/recipes/dan-300w-half.args``: one flag
or value per line, ``#`` comments), which is how the release recipe is checked in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from training.dataset import BoxFrom
from training.paths import DEFAULT_DATA_ROOT

HeatmapChoice = Literal["radius", "window"]
ScheduleChoice = Literal["constant", "cosine"]
LossChoice = Literal["inter_pupil", "wing"]
AmpChoice = Literal["auto", "bf16", "fp16", "off"]
ToggleChoice = Literal["auto", "on", "off"]
BatchNormChoice = Literal["update", "frozen"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# Fields a resumed run may change: where things are and how much longer it may run. Every
# other field must equal the checkpoint's, or the resumed run would be a different run.
RESUMABLE_CHANGES = frozenset(
    {
        "data_root",
        "box_file",
        "output_dir",
        "stage_steps",
        "stage_minutes",
        "finetune_steps",
        "finetune_minutes",
        "threads",
        "init",
        "init_stages",
        "resume",
        "progress",
        "log_level",
    }
)


class ConfigError(ValueError):
    """A training option is out of range or inconsistent with another."""


@dataclass
class TrainConfig:
    data_root: Path = DEFAULT_DATA_ROOT
    box_file: Path | None = None
    output_dir: Path = Path("runs/dan")
    train_boxes: BoxFrom = "landmarks"
    val_boxes: BoxFrom = "file"
    val_count: int = 100
    seed: int = 0
    # network
    num_stages: int = 2
    widths: tuple[int, ...] = (64, 128, 256, 512)
    heatmap_support: HeatmapChoice = "radius"
    # schedule: phases "stage 1", ..., "stage N", then optional end-to-end fine-tuning
    stages: tuple[int, ...] = (1, 2)
    stage_steps: tuple[int, ...] = (20000, 20000)
    stage_minutes: tuple[float, ...] = ()
    finetune_steps: int = 0
    finetune_minutes: float = 0.0
    finetune_lr: float = 1e-4
    finetune_batch_norm: BatchNormChoice = "update"
    batch_size: int = 64
    lr: float = 1e-3
    schedule: ScheduleChoice = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.0
    loss: LossChoice = "inter_pupil"
    patience: int = 0
    ema_decay: float = 0.0
    crop_pool: int = 0
    # augmentation
    rotation_sd: float = 20.0
    scale_sd: float = 0.25
    translation_sd: float = 0.1
    brightness_sd: float = 0.0
    contrast_sd: float = 0.0
    blur_probability: float = 0.0
    noise_sd: float = 0.0
    occlusion_probability: float = 0.0
    mirror: bool = True
    norm_crops_per_image: int = 2
    # bookkeeping
    val_every: int = 200
    amp: AmpChoice = "auto"
    channels_last: ToggleChoice = "auto"
    threads: int = 0
    init: Path | None = None
    init_stages: tuple[int, ...] = ()
    resume: Path | None = None
    progress: bool = True
    log_level: LogLevel = "INFO"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for k, v in dataclasses.asdict(self).items():
            out[k] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        return out

    def check(self) -> None:
        """Raise ConfigError naming the first option out of range or inconsistent."""
        _positive("--val-every", self.val_every)
        _positive("--batch-size", self.batch_size)
        _positive("--num-stages", self.num_stages)
        _positive("--norm-crops-per-image", self.norm_crops_per_image)
        _at_least("--val-count", self.val_count, 1)
        _at_least("--warmup-steps", self.warmup_steps, 0)
        _at_least("--finetune-steps", self.finetune_steps, 0)
        _at_least("--patience", self.patience, 0)
        _at_least("--threads", self.threads, 0)
        _at_least("--crop-pool", self.crop_pool, 0)
        for name, value in (
            ("--lr", self.lr),
            ("--finetune-lr", self.finetune_lr),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        for name, value in (
            ("--weight-decay", self.weight_decay),
            ("--rotation-sd", self.rotation_sd),
            ("--scale-sd", self.scale_sd),
            ("--translation-sd", self.translation_sd),
            ("--brightness-sd", self.brightness_sd),
            ("--contrast-sd", self.contrast_sd),
            ("--noise-sd", self.noise_sd),
            ("--finetune-minutes", self.finetune_minutes),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name, value in (
            ("--blur-probability", self.blur_probability),
            ("--occlusion-probability", self.occlusion_probability),
        ):
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"--ema-decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"--widths needs positive conv widths, got {list(self.widths)}")
        if not self.stages:
            raise ConfigError("--stages needs at least one stage")
        if any(not 1 <= s <= self.num_stages for s in self.stages):
            raise ConfigError(
                f"--stages must be in [1, {self.num_stages}], got {list(self.stages)}"
            )
        if len(self.stage_steps) != len(self.stages):
            raise ConfigError(
                f"--stage-steps needs one value per --stages entry ({len(self.stages)}), "
                f"got {len(self.stage_steps)}"
            )
        if any(s < 1 for s in self.stage_steps):
            raise ConfigError(f"--stage-steps must be >= 1, got {list(self.stage_steps)}")
        if self.stage_minutes and len(self.stage_minutes) != len(self.stages):
            raise ConfigError(
                f"--stage-minutes needs one value per --stages entry ({len(self.stages)}), "
                f"got {len(self.stage_minutes)}"
            )
        if any(not (math.isfinite(m) and m >= 0) for m in self.stage_minutes):
            raise ConfigError(f"--stage-minutes must be >= 0, got {list(self.stage_minutes)}")
        if self.init is not None and self.resume is not None:
            raise ConfigError("--init and --resume exclude each other: a resume has its weights")
        if self.init_stages and self.init is None:
            raise ConfigError("--init-stages needs --init: the weights to take those stages from")
        if any(not 1 <= s <= self.num_stages for s in self.init_stages):
            raise ConfigError(
                f"--init-stages must be in [1, {self.num_stages}], got {list(self.init_stages)}"
            )
        for flag, choice, choices in (
            ("--train-boxes", self.train_boxes, BoxFrom),
            ("--val-boxes", self.val_boxes, BoxFrom),
            ("--heatmap-support", self.heatmap_support, HeatmapChoice),
            ("--schedule", self.schedule, ScheduleChoice),
            ("--loss", self.loss, LossChoice),
            ("--finetune-batch-norm", self.finetune_batch_norm, BatchNormChoice),
            ("--amp", self.amp, AmpChoice),
            ("--channels-last", self.channels_last, ToggleChoice),
            ("--log-level", self.log_level, LogLevel),
        ):
            if choice not in get_args(choices):
                raise ConfigError(
                    f"{flag} must be one of {list(get_args(choices))}, got {choice!r}"
                )

    def differences_from(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields (other than ``RESUMABLE_CHANGES``) whose value differs from a saved config."""
        mine = self.to_dict()
        # A field the saved config predates had its default then: compare with the default.
        theirs = {**TrainConfig().to_dict(), **json.loads(json.dumps(saved, default=str))}
        return {
            k: (theirs[k], v)
            for k, v in mine.items()
            if k not in RESUMABLE_CHANGES and theirs[k] != v
        }


def _positive(name: str, value: int) -> None:
    _at_least(name, value, 1)


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")


class _ArgsFileParser(argparse.ArgumentParser):
    """argparse reading ``@FILE`` args files with several words per line and ``#`` comments."""

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        return arg_line.split("#", 1)[0].split()


def get_args_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = _ArgsFileParser(
        description="Train DAN on 300-W stage by stage. Flags may come from an args file: @FILE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        fromfile_prefix_chars="@",
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
        choices=get_args(BoxFrom),
        default=d.train_boxes,
        help="face boxes of the training crops (paper: landmarks)",
    )
    a(
        "--val-boxes",
        choices=get_args(BoxFrom),
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
        choices=get_args(HeatmapChoice),
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
    a(
        "--finetune-batch-norm",
        choices=get_args(BatchNormChoice),
        default=d.finetune_batch_norm,
        help="batch normalisation during the fine-tuning: update its statistics from the "
        "batches (as in the stage phases), or keep the trained stages' statistics frozen",
    )
    a(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="faces per optimizer step, over all processes of a distributed run",
    )
    a("--lr", type=float, default=d.lr, help="Adam learning rate (peak, with a schedule)")
    a(
        "--schedule",
        choices=get_args(ScheduleChoice),
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
        "--loss",
        choices=get_args(LossChoice),
        default=d.loss,
        help="training loss: the paper's inter-pupil normalised error (eq. 4) or a Wing loss on it",
    )
    a(
        "--patience",
        type=int,
        default=d.patience,
        help="stop a phase after this many validations without improvement (0: never)",
    )
    a(
        "--ema-decay",
        type=float,
        default=d.ema_decay,
        help="validate and keep an exponential moving average of the weights and batch-norm "
        "statistics with this decay per step (e.g. 0.999; 0: the weights themselves)",
    )
    a(
        "--crop-pool",
        type=int,
        default=d.crop_pool,
        help="phases training stage k > 1 (earlier stages frozen) draw this many crops per "
        "training face once, run the frozen stages over them once and train from that pool "
        "(training.crop_pool; built within the phase's --stage-minutes; 0: fresh crops and the "
        "frozen stages at every step)",
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
    a(
        "--brightness-sd",
        type=float,
        default=d.brightness_sd,
        help="sd of the additive brightness change of a training crop, as a fraction of 255",
    )
    a(
        "--contrast-sd",
        type=float,
        default=d.contrast_sd,
        help="sd of the contrast factor (mean 1) of a training crop about its mean grey",
    )
    a(
        "--blur-probability",
        type=float,
        default=d.blur_probability,
        help="probability of a Gaussian blur (sigma 0.5-1.5 px) of a training crop, in [0, 1]",
    )
    a(
        "--noise-sd",
        type=float,
        default=d.noise_sd,
        help="sd of grey noise added to a training crop, as a fraction of 255",
    )
    a(
        "--occlusion-probability",
        type=float,
        default=d.occlusion_probability,
        help="probability of one random grey rectangle over a training crop, in [0, 1]",
    )
    a("--no-mirror", dest="mirror", action="store_false", help="do not mirror training faces")
    a(
        "--norm-crops-per-image",
        type=int,
        default=d.norm_crops_per_image,
        help="perturbed crops per image used to compute the mean and std images",
    )
    a("--val-every", type=int, default=d.val_every, help="validate every this many steps (>= 1)")
    a(
        "--amp",
        choices=get_args(AmpChoice),
        default=d.amp,
        help="mixed precision: auto = fp16 on CUDA, bf16 on CPUs with native bf16 (AVX-512 BF16/AMX), else fp32",
    )
    a(
        "--channels-last",
        choices=get_args(ToggleChoice),
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
    a(
        "--init-stages",
        type=int,
        nargs="+",
        default=list(d.init_stages),
        help="take only these stages' weights (1-based) from --init; the others start fresh "
        "(e.g. 1: a new stage 2 on a trained stage 1). Default: every stage the file has",
    )
    a(
        "--resume",
        type=Path,
        default=None,
        help="resume an interrupted run from its last.pt (other flags must match the run's)",
    )
    a("--no-progress", dest="progress", action="store_false", help="no progress bar")
    a(
        "--log-level",
        choices=get_args(LogLevel),
        default=d.log_level,
        help="logging level",
    )
    return p


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Parse and check the command line; a bad value exits with argparse's usage message."""
    parser = get_args_parser()
    values = vars(parser.parse_args(argv))
    for key in ("widths", "stages", "stage_steps", "stage_minutes", "init_stages"):
        values[key] = tuple(values[key])
    cfg = TrainConfig(**values)
    try:
        cfg.check()
    except ConfigError as e:
        parser.error(str(e))
    return cfg
