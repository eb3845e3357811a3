"""Train DAN on 300-W, stage by stage (the paper's procedure).

    python -m training.train @training/recipes/dan-300w-half.args \
        --data-root ../shared/data/300w --output-dir runs/dan

``training/recipes/dan-300w-half.args`` is the release recipe (the model card
names it); any flag after it overrides it. Stage 1 trains alone; then each later
stage trains with the earlier ones frozen; optionally all stages are fine-tuned
end to end. Every phase has a step limit and optionally a wall-clock budget: the
learning-rate schedule anneals over whichever runs out first, so a run can be
planned to fit the time available. Validation (100 held-out training images,
detector boxes) runs every ``--val-every`` steps; the best weights of each phase
are kept (with ``--ema-decay``, the best of an average of the weights,
``training.weight_average``). With ``--crop-pool K`` a phase training stage
k > 1 draws its crops from a fixed pool whose frozen-stage outputs were computed
once (``training.crop_pool``). ``last.pt`` resumes an interrupted run
(``--resume``, with the run's own flags; its random-number state included);
``--init`` starts from a checkpoint or from an exported ``.onnx`` model. Under
``torchrun --nproc-per-node N`` the same command trains data-parallel
(``training.distributed``).

The shape of the file follows the torchvision reference scripts: ``load_data``,
``build_or_resume_model``, ``train_one_phase``, ``validate``, ``train``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.config import DANConfig
from model.dan import DAN
from model.landmarks import mirror_landmarks
from training import distributed
from training.augment import Appearance, CropSampler, Face, Perturbation, make_crop
from training.checkpoint import init_from, load_checkpoint, save_checkpoint
from training.config import ConfigError, TrainConfig, parse_config
from training.crop_pool import CropPool, FrozenStages, build_crop_pool
from training.dataset import Sample, holdout, load_split, read_gray
from training.distributed import Distributed
from training.losses import landmark_loss
from training.mean_shape import canonical_mean_shape
from training.metrics import normalised_errors
from training.weight_average import WeightAverage

log = logging.getLogger("training.train")


@dataclass(frozen=True)
class Phase:
    name: str  # "stage1", "stage2", ..., "finetune"
    trained: tuple[int, ...]  # 0-based stages whose weights move
    run: int  # stages run forward (the output of the last is the loss)
    steps: int
    minutes: float
    lr: float
    frozen_batch_norm: bool = False  # every batch norm keeps its running statistics


@dataclass
class TrainingData:
    """Decoded training and validation faces."""

    train: list[Face]
    val: list[Face]
    val_names: list[str]


@dataclass
class ValidationSet:
    images: torch.Tensor  # (M, 1, S, S) uint8
    targets: np.ndarray  # (M, 68, 2) crop pixels


@dataclass
class Run:
    """Everything a phase needs that stays the same across phases."""

    cfg: TrainConfig
    model: DAN
    dist: Distributed
    sampler: CropSampler
    val: ValidationSet
    log_path: Path


@dataclass
class PhaseState:
    """Where a phase stands: saved in every checkpoint, restored by ``--resume``."""

    step: int = 0
    best: float = math.inf
    stale: int = 0
    elapsed: float = 0.0
    optimizer: dict[str, Any] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)  # one per process
    average: dict[str, Any] | None = None  # WeightAverage.state() (--ema-decay)


def build_phases(cfg: TrainConfig) -> list[Phase]:
    phases = []
    for i, stage in enumerate(cfg.stages):
        minutes = cfg.stage_minutes[i] if cfg.stage_minutes else 0.0
        phases.append(
            Phase(f"stage{stage}", (stage - 1,), stage, cfg.stage_steps[i], minutes, cfg.lr)
        )
    if cfg.finetune_steps > 0:
        phases.append(
            Phase(
                "finetune",
                tuple(range(cfg.num_stages)),
                cfg.num_stages,
                cfg.finetune_steps,
                cfg.finetune_minutes,
                cfg.finetune_lr,
                frozen_batch_norm=cfg.finetune_batch_norm == "frozen",
            )
        )
    return phases


def decode_faces(samples: list[Sample], box_source: str) -> list[Face]:
    return [Face(read_gray(s.image_path), s.landmarks, s.box(box_source)) for s in samples]  # type: ignore[arg-type]


def load_data(cfg: TrainConfig) -> TrainingData:
    """The training split minus ``--val-count`` held-out images (seeded), decoded."""
    split = load_split(cfg.data_root, "training", cfg.box_file)
    if not split.samples:
        raise SystemExit(f"no training images under {cfg.data_root} (looked for {split.absent})")
    train_samples, val_samples = holdout(split.samples, cfg.val_count, cfg.seed)
    log.info(
        "training on %d images (%s), validating on %d",
        len(train_samples),
        ", ".join(split.present),
        len(val_samples),
    )
    t0 = time.perf_counter()
    data = TrainingData(
        decode_faces(train_samples, cfg.train_boxes),
        decode_faces(val_samples, cfg.val_boxes),
        [s.name for s in val_samples],
    )
    log.info("decoded %d images in %.1f s", len(split.samples), time.perf_counter() - t0)
    return data


def perturbation_of(cfg: TrainConfig) -> Perturbation:
    return Perturbation(
        cfg.rotation_sd,
        cfg.scale_sd,
        cfg.translation_sd,
        mirror_probability=0.5 if cfg.mirror else 0.0,
    )


def appearance_of(cfg: TrainConfig) -> Appearance:
    return Appearance(
        cfg.brightness_sd,
        cfg.contrast_sd,
        cfg.blur_probability,
        cfg.noise_sd,
        cfg.occlusion_probability,
    )


def normalisation_images(
    sampler: CropSampler, crops_per_image: int, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std images over perturbed training crops."""
    total = max(1, crops_per_image * len(sampler.faces))
    acc = np.zeros((sampler.size, sampler.size))
    acc2 = np.zeros_like(acc)
    done = 0
    while done < total:
        n = min(batch, total - done)
        images, _ = sampler.sample(n)
        x = images[:, 0].astype(np.float64)
        acc += x.sum(axis=0)
        acc2 += (x * x).sum(axis=0)
        done += n
    mean = acc / total
    std = np.sqrt(np.maximum(acc2 / total - mean * mean, 0.0))
    return mean, np.maximum(std, 1.0)


def build_or_resume_model(
    cfg: TrainConfig, data: TrainingData
) -> tuple[DAN, dict[str, Any] | None]:
    """The model of ``--resume`` (with its training state), or a new one (``--init`` weights).

    A new model gets its mean shape (Procrustes over the training shapes and
    their mirror images) and per-pixel normalisation from the training faces.
    """
    if cfg.resume is not None:
        saved = load_checkpoint(cfg.resume)
        differences = cfg.differences_from(saved.get("train_config", {}))
        if differences:
            listed = ", ".join(
                f"{k}: run {old!r}, now {new!r}" for k, (old, new) in differences.items()
            )
            raise ConfigError(
                f"--resume {cfg.resume} was made with other flags ({listed}); "
                "resume with the run's own flags or start a new run with --init"
            )
        model = DAN(DANConfig.from_dict(saved["model_config"]))
        model.load_state_dict(saved["model"])
        return model, saved
    config = DANConfig(
        num_stages=cfg.num_stages,
        widths=cfg.widths,
        heatmap_support=cfg.heatmap_support,
    )
    shapes = np.stack([f.landmarks for f in data.train])
    if cfg.mirror:
        mirrored = [mirror_landmarks(f.landmarks, f.image.shape[1]) for f in data.train]
        shapes = np.concatenate([shapes, np.stack(mirrored)])
    mean_shape = canonical_mean_shape(shapes, config.image_size)
    stats = CropSampler(
        data.train, mean_shape, config.image_size, perturbation_of(cfg), cfg.seed + 1
    )
    mean_image, std_image = normalisation_images(stats, cfg.norm_crops_per_image)
    model = DAN(
        config,
        torch.from_numpy(mean_shape).float(),
        torch.from_numpy(mean_image).float(),
        torch.from_numpy(std_image).float(),
    )
    if cfg.init is not None:
        init_from(model, cfg.init, cfg.init_stages)
    return model, None


def validation_set(faces: list[Face], mean_shape: np.ndarray, size: int) -> ValidationSet:
    crops = [make_crop(f, mean_shape, size) for f in faces]
    images = torch.from_numpy(np.stack([c[0] for c in crops])[:, None])
    return ValidationSet(images, np.stack([c[1] for c in crops]))


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32."""
    if cfg.amp == "off":
        return None
    if cfg.amp == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return torch.bfloat16 if cfg.amp == "bf16" else torch.float16


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.channels_last == "auto":
        return amp_dtype(cfg, device) is not None
    return cfg.channels_last == "on"


def autocast_context(
    cfg: TrainConfig, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    dtype = amp_dtype(cfg, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_input(
    images: np.ndarray | torch.Tensor, cfg: TrainConfig, device: torch.device
) -> torch.Tensor:
    """uint8 crops (B, 1, S, S) -> float tensor on ``device`` in the training memory format."""
    x = torch.as_tensor(images).to(device, non_blocking=True).float()
    if use_channels_last(cfg, device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.inference_mode()
def validate(
    model: DAN, val: ValidationSet, cfg: TrainConfig, device: torch.device, run: int
) -> dict[str, float]:
    """Validation errors (inter-ocular and inter-pupil mean, fractions) of every stage up to ``run``."""
    was_training = model.training
    model.eval()
    outputs: list[list[np.ndarray]] = [[] for _ in range(run)]
    for i in range(0, len(val.images), 64):
        with autocast_context(cfg, device):
            shapes = model(to_input(val.images[i : i + 64], cfg, device), num_stages=run)
        for k, s in enumerate(shapes):
            outputs[k].append(s.float().cpu().numpy())
    model.train(was_training)
    result = {}
    for k, out in enumerate(outputs):
        pred = np.concatenate(out).astype(np.float64)
        for norm, key in (("inter_ocular", "io"), ("inter_pupil", "ip")):
            result[f"stage{k + 1}_{key}"] = float(normalised_errors(pred, val.targets, norm).mean())
    return result


def lr_at(phase: Phase, cfg: TrainConfig, progress: float, step: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.schedule == "constant":
        return phase.lr * warm
    floor = cfg.min_lr_ratio
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return phase.lr * warm * cosine


Given = tuple[int, torch.Tensor, torch.Tensor]  # DAN.forward's outputs of the frozen stages


def batches(
    sampler: CropSampler, batch_size: int, pool: CropPool | None, done: int
) -> Iterator[tuple[np.ndarray, np.ndarray, Given | None, float]]:
    """Endless batches, fresh crops or from ``pool`` (whose rows carry the outputs of the first
    ``done`` stages), with the seconds spent making each."""
    while True:
        t0 = time.perf_counter()
        if pool is None:
            images, targets = sampler.sample(batch_size)
            given = None
        else:
            batch = pool.sample(sampler.rng, batch_size)
            images, targets = batch.images, batch.targets
            given = (done, batch.shapes, batch.features)
        yield images, targets, given, time.perf_counter() - t0


def training_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: np.ndarray,
    targets: np.ndarray,
    given: Given | None,
    cfg: TrainConfig,
    device: torch.device,
    run: int,
) -> float:
    """One optimiser step on a batch through the first ``run`` stages; returns the loss."""
    x = to_input(images, cfg, device)
    y = torch.from_numpy(targets).to(device, non_blocking=True).float()
    if given is not None:
        done, shapes, features = given
        given = (done, shapes.to(device), features.to(device))
    with autocast_context(cfg, device):
        pred = net(x, num_stages=run, given=given)[-1]
    loss = landmark_loss(pred, y, cfg.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.item())


def frozen_stages(model: DAN, cfg: TrainConfig, device: torch.device, done: int) -> FrozenStages:
    """The outputs of the model's first ``done`` stages for uint8 crops, on the CPU."""

    @torch.no_grad()
    def run(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast_context(cfg, device):
            shapes, features = model.forward_features(
                to_input(images, cfg, device), num_stages=done
            )
        return shapes[-1].float().cpu(), features[-1].float().cpu()

    return run


def pool_for(r: Run, phase: Phase, p_index: int) -> CropPool | None:
    """The crop pool of a phase that trains one stage after frozen ones (``--crop-pool``)."""
    cfg, d = r.cfg, r.dist
    if cfg.crop_pool == 0 or phase.run == 1 or phase.trained != (phase.run - 1,):
        return None
    frozen = frozen_stages(r.model, cfg, d.device, phase.run - 1)
    seed = cfg.seed + 3 + 7919 * d.rank + 1000 * p_index
    return build_crop_pool(r.sampler, cfg.crop_pool, seed, frozen)


def rng_state(sampler: CropSampler) -> dict[str, Any]:
    """This process's random-number state: the crop sampler's and torch's (dropout)."""
    state: dict[str, Any] = {
        "sampler": sampler.rng.bit_generator.state,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(sampler: CropSampler, state: dict[str, Any]) -> None:
    sampler.rng.bit_generator.state = state["sampler"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def phase_state_of(saved: dict[str, Any]) -> PhaseState:
    return PhaseState(
        step=saved["step"],
        best=saved["best"],
        stale=saved["stale"],
        elapsed=saved["elapsed"],
        optimizer=saved.get("optimizer"),
        rng=saved.get("rng", []),
        average=saved.get("average"),
    )


def train_one_phase(r: Run, phase: Phase, p_index: int, state: PhaseState) -> Path:
    """Train one phase from ``state``; returns the path of its best checkpoint."""
    cfg, model, d = r.cfg, r.model, r.dist
    best_path = cfg.output_dir / f"best_{phase.name}.pt"
    for s in range(model.config.num_stages):
        model.freeze_stage(s, s not in phase.trained)
    model.freeze_batch_norm(phase.frozen_batch_norm)
    model.train()
    params = [p for s in phase.trained for p in model.stage_parameters(s)]
    optimizer = torch.optim.Adam(params, lr=phase.lr, weight_decay=cfg.weight_decay)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    if len(state.rng) == d.world_size:
        restore_rng(r.sampler, state.rng[d.rank])
    elif state.step > 0:  # a checkpoint without (or with another run's) random state
        r.sampler.rng = np.random.default_rng(
            cfg.seed + 2 + 7919 * d.rank + 1000 * p_index + state.step
        )
    # The average lives in the main process, the one that validates and saves.
    average = (
        WeightAverage(model, cfg.ema_decay, state.average)
        if cfg.ema_decay > 0 and d.is_main
        else None
    )
    net: torch.nn.Module = model
    if d.active:
        net = DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None
        )
    budget = phase.minutes * 60.0
    t_start = time.perf_counter() - state.elapsed
    pool = pool_for(r, phase, p_index)  # within the phase's time budget
    data_seconds = step_seconds = 0.0
    start_step = step = state.step
    bar = tqdm(
        total=phase.steps,
        initial=start_step,
        desc=phase.name,
        disable=not (cfg.progress and d.is_main),
        dynamic_ncols=True,
    )
    loss_avg = float("nan")
    share = d.share_of(cfg.batch_size)
    for images, targets, given, data_time in batches(r.sampler, share, pool, phase.run - 1):
        # Rank 0's clock decides the schedule and the end, so every process takes the same step.
        elapsed = time.perf_counter() - t_start
        progress = max(step / phase.steps, elapsed / budget if budget > 0 else 0.0)
        (progress,) = d.broadcast_floats([progress])
        # The step limit ends a phase here; the time budget ends it after a step, which then
        # validates, so every phase ends on a validation point (a resumed phase that had
        # already ended ends at once).
        resumed_done = step == start_step and progress >= 1.0 and best_path.exists()
        if step >= phase.steps or resumed_done:
            break
        lr = lr_at(phase, cfg, progress, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        loss_value = training_step(net, optimizer, images, targets, given, cfg, d.device, phase.run)
        if average is not None:
            average.update()
        step_seconds += time.perf_counter() - t0
        data_seconds += data_time
        step += 1
        loss_avg = loss_value if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss_value
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr:.2e}", best=f"{state.best:.4f}")
        out_of_time = budget > 0 and time.perf_counter() - t_start >= budget
        (stop,) = d.broadcast_floats([float(step >= phase.steps or out_of_time)])
        if step % cfg.val_every and not stop:
            continue
        state.step, state.elapsed = step, time.perf_counter() - t_start
        state.rng = d.gather_objects(rng_state(r.sampler))
        patience_over = 0.0
        if d.is_main:
            kept = model if average is None else average.model  # what this phase keeps
            errors = validate(kept, r.val, cfg, d.device, phase.run)
            if average is not None:  # the weights themselves, for comparison
                raw = validate(model, r.val, cfg, d.device, phase.run)
                errors |= {f"raw_{k}": v for k, v in raw.items()}
            score = errors[f"stage{phase.run}_io"]
            improved = score < state.best
            state.best, state.stale = (score, 0) if improved else (state.best, state.stale + 1)
            record = {
                "phase": phase.name,
                "step": step,
                "samples": step * cfg.batch_size,
                "elapsed_s": round(state.elapsed, 1),
                "lr": lr,
                "train_loss": loss_avg,
                **errors,
                "best": state.best,
                "images_per_s": round(
                    (step - start_step) * cfg.batch_size / max(step_seconds, 1e-9), 2
                ),
                "data_fraction": round(data_seconds / max(1e-9, data_seconds + step_seconds), 4),
            }
            with r.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            log.info("%s", json.dumps(record))
            saved = {
                "train_config": cfg.to_dict(),
                "phase": p_index,
                "step": step,
                "best": state.best,
                "stale": state.stale,
                "elapsed": state.elapsed,
                "validation": errors,
                "rng": state.rng,
            }
            if improved:
                save_checkpoint(best_path, kept, **saved)
            if average is not None:
                saved["average"] = average.state()
            save_checkpoint(
                cfg.output_dir / "last.pt", model, optimizer=optimizer.state_dict(), **saved
            )
            bar.set_postfix(loss=f"{loss_avg:.4f}", val=f"{score:.4f}", best=f"{state.best:.4f}")
            if cfg.patience > 0 and state.stale >= cfg.patience:
                log.info("%s: no improvement in %d validations; stopping", phase.name, state.stale)
                patience_over = 1.0
        (patience_over,) = d.broadcast_floats([patience_over])
        if stop or patience_over:
            break
    bar.close()
    if d.is_main and not best_path.exists():
        raise RuntimeError(f"{phase.name} ended without a validation point; nothing saved")
    return best_path


def train(cfg: TrainConfig) -> Path:
    """Run every phase; returns the path of the final best checkpoint (``best.pt``)."""
    cfg.check()
    d = distributed.start()
    try:
        return _train(cfg, d)
    finally:
        distributed.stop(d)


def _train(cfg: TrainConfig, d: Distributed) -> Path:
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    d.share_of(cfg.batch_size)  # refuse a batch that does not split before any work
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg)
    if d.is_main:
        (out / "validation_images.txt").write_text("\n".join(data.val_names) + "\n")
    model, saved = build_or_resume_model(cfg, data)
    mean_shape = model.mean_shape.double().numpy()
    size = model.config.image_size
    # Each process draws its own crops; rank 0 draws what a single-process run draws.
    sampler = CropSampler(
        data.train,
        mean_shape,
        size,
        perturbation_of(cfg),
        cfg.seed + 2 + 7919 * d.rank,
        appearance_of(cfg),
    )
    model.to(d.device)
    if use_channels_last(cfg, d.device):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    log.info(
        "device %s, autocast %s, channels_last %s, %d threads, %d process(es)",
        d.device,
        amp_dtype(cfg, d.device),
        use_channels_last(cfg, d.device),
        torch.get_num_threads(),
        d.world_size,
    )
    r = Run(cfg, model, d, sampler, validation_set(data.val, mean_shape, size), out / "log.jsonl")
    phases = build_phases(cfg)
    start_phase = saved["phase"] if saved is not None else 0
    best_path = out / "best.pt"
    for p_index in range(start_phase, len(phases)):
        resumed = saved is not None and p_index == start_phase
        state = phase_state_of(saved) if resumed and saved is not None else PhaseState()
        best_path = train_one_phase(r, phases[p_index], p_index, state)
        if d.active:
            torch.distributed.barrier()
        model.load_state_dict(load_checkpoint(best_path)["model"])
    final = out / "best.pt"
    if d.is_main:
        final.write_bytes(best_path.read_bytes())
        log.info("done: %s", final)
    return final


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    train(cfg)


if __name__ == "__main__":
    main()
