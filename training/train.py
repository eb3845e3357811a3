"""Train DAN on 300-W, stage by stage (the paper's procedure).

    python -m training.train --data-root ../shared/data/300w --output-dir runs/dan

Stage 1 trains alone; then each later stage trains with the earlier ones
frozen; optionally all stages are fine-tuned end to end. Every phase has a
step limit and optionally a wall-clock budget: the learning-rate schedule
anneals over whichever runs out first, so a run can be planned to fit the time
available. Validation (100 held-out training images, detector boxes) runs every
``--val-every`` steps; the best weights of each phase are kept. ``last.pt``
resumes an interrupted run (``--resume``); ``--init`` starts from a checkpoint
or from an exported ``.onnx`` model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model.config import DANConfig
from model.dan import DAN
from model.landmarks import mirror_landmarks
from training.augment import CropSampler, Face, Perturbation, make_crop
from training.checkpoint import init_from, load_checkpoint, save_checkpoint
from training.config import TrainConfig, parse_config
from training.dataset import Sample, holdout, load_split, read_gray
from training.losses import landmark_loss
from training.mean_shape import canonical_mean_shape
from training.metrics import normalised_errors

log = logging.getLogger("training.train")


@dataclass
class Phase:
    name: str  # "stage1", "stage2", ..., "finetune"
    trained: tuple[int, ...]  # 0-based stages whose weights move
    run: int  # stages run forward (the output of the last is the loss)
    steps: int
    minutes: float
    lr: float


@dataclass
class ValidationSet:
    images: torch.Tensor  # (M, 1, S, S) uint8
    targets: np.ndarray  # (M, 68, 2) crop pixels


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
            )
        )
    return phases


def decode_faces(samples: list[Sample], box_source: str) -> list[Face]:
    faces = []
    for s in samples:
        faces.append(Face(read_gray(s.image_path), s.landmarks, s.box(box_source)))  # type: ignore[arg-type]
    return faces


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


@torch.inference_mode()
def evaluate(
    model: DAN, val: ValidationSet, device: torch.device, cfg: TrainConfig, run: int
) -> dict[str, float]:
    """Validation errors (inter-ocular and inter-pupil mean, fractions) of every stage up to ``run``."""
    was_training = model.training
    model.eval()
    outputs: list[list[np.ndarray]] = [[] for _ in range(run)]
    for i in range(0, len(val.images), 64):
        x = val.images[i : i + 64].to(device).float()
        if use_channels_last(cfg, device):
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(cfg, device):
            shapes = model(x, num_stages=run)
        for k, s in enumerate(shapes):
            outputs[k].append(s.float().cpu().numpy())
    model.train(was_training)
    result = {}
    for k, out in enumerate(outputs):
        pred = np.concatenate(out).astype(np.float64)
        result[f"stage{k + 1}_io"] = float(
            normalised_errors(pred, val.targets, "inter_ocular").mean()
        )
        result[f"stage{k + 1}_ip"] = float(
            normalised_errors(pred, val.targets, "inter_pupil").mean()
        )
    return result


def lr_at(phase: Phase, cfg: TrainConfig, progress: float, step: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.schedule == "constant":
        return phase.lr * warm
    floor = cfg.min_lr_ratio
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return phase.lr * warm * cosine


def batches(
    sampler: CropSampler, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """Endless batches of fresh crops, with the seconds spent making each."""
    while True:
        t0 = time.perf_counter()
        images, targets = sampler.sample(batch_size)
        yield images, targets, time.perf_counter() - t0


def train(cfg: TrainConfig) -> Path:
    """Run every phase; returns the path of the final best checkpoint."""
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)

    split = load_split(cfg.data_root, "training", cfg.box_file)
    if not split.samples:
        raise SystemExit(f"no training images under {cfg.data_root} (looked for {split.absent})")
    train_samples, val_samples = holdout(split.samples, cfg.val_count, cfg.seed)
    (out / "validation_images.txt").write_text("\n".join(s.name for s in val_samples) + "\n")
    log.info(
        "training on %d images (%s), validating on %d",
        len(train_samples),
        ", ".join(split.present),
        len(val_samples),
    )

    t0 = time.perf_counter()
    train_faces = decode_faces(train_samples, cfg.train_boxes)
    val_faces = decode_faces(val_samples, cfg.val_boxes)
    log.info(
        "decoded %d images in %.1f s", len(train_faces) + len(val_faces), time.perf_counter() - t0
    )

    perturbation = Perturbation(
        cfg.rotation_sd,
        cfg.scale_sd,
        cfg.translation_sd,
        mirror_probability=0.5 if cfg.mirror else 0.0,
    )
    resume = load_checkpoint(cfg.resume) if cfg.resume else None
    if resume is not None:
        model = DAN(DANConfig.from_dict(resume["model_config"]))
        model.load_state_dict(resume["model"])
    else:
        model_config = DANConfig(
            num_stages=cfg.num_stages,
            widths=cfg.widths,
            heatmap_support=cfg.heatmap_support,  # type: ignore[arg-type]  # argparse checks the choices
        )
        shapes = np.stack([f.landmarks for f in train_faces])
        if cfg.mirror:
            shapes = np.concatenate(
                [
                    shapes,
                    np.stack(
                        [mirror_landmarks(f.landmarks, f.image.shape[1]) for f in train_faces]
                    ),
                ]
            )
        mean_shape = canonical_mean_shape(shapes, model_config.image_size)
        stats_sampler = CropSampler(
            train_faces, mean_shape, model_config.image_size, perturbation, cfg.seed + 1
        )
        mean_image, std_image = normalisation_images(stats_sampler, cfg.norm_crops_per_image)
        model = DAN(
            model_config,
            torch.from_numpy(mean_shape).float(),
            torch.from_numpy(mean_image).float(),
            torch.from_numpy(std_image).float(),
        )
        if cfg.init is not None:
            init_from(model, cfg.init)
    mean_shape = model.mean_shape.double().numpy()
    size = model.config.image_size
    sampler = CropSampler(train_faces, mean_shape, size, perturbation, cfg.seed + 2)
    val = validation_set(val_faces, mean_shape, size)
    model.to(device)
    log.info(
        "device %s, autocast %s, channels_last %s, %d threads",
        device,
        amp_dtype(cfg, device),
        use_channels_last(cfg, device),
        torch.get_num_threads(),
    )
    if use_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    phases = build_phases(cfg)
    start_phase, start_step = 0, 0
    if resume is not None:
        start_phase, start_step = resume["phase"], resume["step"]
        sampler.rng = np.random.default_rng(cfg.seed + 2 + 1000 * start_phase + start_step)

    log_path = out / "log.jsonl"
    best_path = out / "best.pt"
    for p_index in range(start_phase, len(phases)):
        phase = phases[p_index]
        best_path = out / f"best_{phase.name}.pt"
        run_phase(
            model,
            phase,
            p_index,
            cfg,
            sampler,
            val,
            device,
            log_path,
            best_path,
            resume if p_index == start_phase else None,
            start_step if p_index == start_phase else 0,
        )
        best = load_checkpoint(best_path)
        model.load_state_dict(best["model"])
    final = out / "best.pt"
    final.write_bytes(best_path.read_bytes())
    log.info("done: %s", final)
    return final


def run_phase(
    model: DAN,
    phase: Phase,
    p_index: int,
    cfg: TrainConfig,
    sampler: CropSampler,
    val: ValidationSet,
    device: torch.device,
    log_path: Path,
    best_path: Path,
    resume: dict[str, Any] | None,
    start_step: int,
) -> None:
    for s in range(model.config.num_stages):
        model.freeze_stage(s, s not in phase.trained)
    model.train()
    params = [p for s in phase.trained for p in model.stage_parameters(s)]
    optimizer = torch.optim.Adam(params, lr=phase.lr, weight_decay=cfg.weight_decay)
    best = math.inf
    stale = 0
    elapsed_before = 0.0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        best, stale, elapsed_before = resume["best"], resume["stale"], resume["elapsed"]
    budget = phase.minutes * 60.0
    t_start = time.perf_counter() - elapsed_before
    data_seconds = 0.0
    step_seconds = 0.0
    bar = tqdm(
        total=phase.steps,
        initial=start_step,
        desc=phase.name,
        disable=not cfg.progress,
        dynamic_ncols=True,
    )
    step = start_step
    loss_avg = float("nan")
    for images, targets, data_time in batches(sampler, cfg.batch_size):
        elapsed = time.perf_counter() - t_start
        progress = max(step / phase.steps, elapsed / budget if budget > 0 else 0.0)
        if progress >= 1.0:
            break
        lr = lr_at(phase, cfg, progress, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        x = torch.from_numpy(images).to(device).float()
        if use_channels_last(cfg, device):
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(targets).to(device).float()
        with autocast_context(cfg, device):
            pred = model(x, num_stages=phase.run)[-1]
        loss = landmark_loss(pred, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        step_seconds += time.perf_counter() - t0
        data_seconds += data_time
        step += 1
        loss_avg = loss.item() if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr:.2e}", best=f"{best:.4f}")
        done = step >= phase.steps or (budget > 0 and time.perf_counter() - t_start >= budget)
        if step % cfg.val_every == 0 or done:
            errors = evaluate(model, val, device, cfg, phase.run)
            score = errors[f"stage{phase.run}_io"]
            improved = score < best
            if improved:
                best, stale = score, 0
            else:
                stale += 1
            elapsed = time.perf_counter() - t_start
            record = {
                "phase": phase.name,
                "step": step,
                "elapsed_s": round(elapsed, 1),
                "lr": lr,
                "train_loss": loss_avg,
                **errors,
                "best": best,
                "images_per_s": round(
                    (step - start_step) * cfg.batch_size / max(step_seconds, 1e-9), 2
                ),
                "data_fraction": round(data_seconds / max(1e-9, data_seconds + step_seconds), 4),
            }
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            log.info("%s", json.dumps(record))
            state = {
                "train_config": cfg.to_dict(),
                "phase": p_index,
                "step": step,
                "best": best,
                "stale": stale,
                "elapsed": elapsed,
                "validation": errors,
            }
            if improved:
                save_checkpoint(best_path, model, **state)
            save_checkpoint(
                cfg.output_dir / "last.pt", model, optimizer=optimizer.state_dict(), **state
            )
            bar.set_postfix(loss=f"{loss_avg:.4f}", val=f"{score:.4f}", best=f"{best:.4f}")
            if cfg.patience > 0 and stale >= cfg.patience:
                log.info(
                    "%s: no improvement in %d validations; stopping the phase", phase.name, stale
                )
                break
        if done:
            break
    bar.close()
    if not best_path.exists():
        raise RuntimeError(f"{phase.name} ended without a validation point; nothing saved")


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    train(cfg)


if __name__ == "__main__":
    main()
