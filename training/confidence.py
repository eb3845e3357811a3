"""Train a confidence head on a finished DAN and export the model with a ``confidence`` output.

    python -m training.confidence --model model/dan-300w.onnx \
        --validation-images runs/dan/validation_images.txt \
        --data-root ../shared/data/300w --out runs/confidence/dan-300w.onnx

The network stays as it is: its weights are read from the model file (an
exported ``.onnx`` or a training checkpoint ``.pt``, by
``training.checkpoint.load_weights``) and exported again unchanged by
``training.export`` with one more output, ``confidence`` (B,) in [0, 1], and
the metadata ``dan.confidence`` (``model.metadata.ConfidenceInfo``): what it
means, the default threshold, how it was made and what it scored.

The head (chosen by measurement, ``model/CONFIDENCE.md``) is a logistic
regression on what the network computes anyway: the fc1 activations of every
stage and the log of how far each stage after the first moved the shape
(relative to its inter-ocular distance). Its target is the probability that a
crop's landmarks are right: 1 for an inter-ocular error up to ``--good`` (5%),
0 from ``--bad`` (8%, the benchmark's failure) and for crops without a face,
linear between. It learns from the network's own outputs on crops of the 300-W
training images (``training.confidence_crops``: the detector box slightly
jittered, strongly perturbed boxes, boxes shifted 0.6 to 2 box widths off the
face, face-sized boxes on the background; faces mirrored at random). The
images held out from the network's training (``--validation-images``: the
``validation_images.txt`` of its run; default ``training.train``'s split,
``--val-count`` images of ``--seed``) stay out of the head's training: the
crops of each of them and of its mirror image (cut as ``bench.confidence``
cuts the test images), on which the network's errors are honest, calibrate its
logit (Platt scaling) and set the default threshold, the largest multiple of
0.01 below which at most ``--face-rejection`` (2%, the issue's budget for true
faces) of their detector-box faces fall, so that it flags as many failures as
that budget allows; their numbers go into the metadata.

The network runs once over all crops on onnxruntime (a temporary fp32 graph
with the fc1 activations as outputs); the head fits in seconds. About 10,300
crops: under five minutes on two CPU cores, even while they train something
else. Measure the result on the common subset with ``python -m
bench.confidence``. The head's weights are stored like the network's (fp16
unless ``--fp32``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from model.arrays import FloatArray
from model.config import DANConfig
from model.dan import DAN
from model.landmarks import OUTER_EYE_CORNERS
from model.metadata import (
    CONFIDENCE_OUTPUT_NAME,
    STAGE_OUTPUT_NAME,
    ConfidenceInfo,
    ModelMetadata,
    onnx_props,
)
from training.arguments import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from training.augment import Face
from training.checkpoint import load_weights
from training.confidence_crops import (
    BAD_ERROR,
    BENCHMARK_PLAN,
    BOX,
    GOOD_ERROR,
    RANKING_ERROR,
    TRAINING_PLAN,
    CropPlan,
    Crops,
    choose_threshold,
    crop_errors,
    cut_crops,
    soft_targets,
    summarise,
)
from training.dataset import Sample, holdout, load_split, read_gray
from training.export import LICENCE, export, export_graph

log = logging.getLogger("training.confidence")

FEATURES_OUTPUT = "features"
# The held-out images and their mirror images: crops as the benchmark cuts them (the detector box
# as it is, a strong perturbation, the benchmark's non-faces).
HELD_OUT_PLAN = BENCHMARK_PLAN
METHOD = (
    "logistic regression on every stage's fc1 activations and log stage-to-stage movement "
    "(standardised), trained on crops of the 300-W training images (detector boxes jittered, "
    "strong perturbations, boxes shifted 0.6-2 box widths, background boxes) to the soft target "
    "1 at inter-ocular error <= {good:.0%}, 0 at >= {bad:.0%} or no face; Platt-calibrated on "
    "the crops of the images held out from the network's training"
)


class _FeatureGraph(nn.Module):
    """The network with its stages' fc1 activations as an output, for one fast extraction."""

    def __init__(self, dan: DAN) -> None:
        super().__init__()
        self.dan = dan

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        shapes, features = self.dan.forward_features(images)
        return torch.stack(shapes, dim=1), torch.stack(features, dim=1)  # (B, K, N, 2), (B, K, F)


@dataclass(frozen=True)
class NetworkOutputs:
    """Every stage's landmarks (M, K, N, 2) and fc1 activations (M, K, F) for a set of crops."""

    shapes: FloatArray
    features: FloatArray


def run_network(
    dan: DAN, pixels: npt.NDArray[np.uint8], threads: int = 0, batch_size: int = 64
) -> NetworkOutputs:
    """The network's landmarks and fc1 activations for crops (M, S, S), on onnxruntime."""
    size = dan.config.image_size
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features.onnx"
        export_graph(
            _FeatureGraph(dan.cpu().float().eval()).eval(),
            torch.rand(2, 1, size, size) * 255.0,
            path,
            output_names=(STAGE_OUTPUT_NAME, FEATURES_OUTPUT),
        )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads > 0:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shapes, features = [], []
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size, None].astype(np.float32)
        s, f = session.run([STAGE_OUTPUT_NAME, FEATURES_OUTPUT], {"images": x})
        shapes.append(s)
        features.append(f)
    return NetworkOutputs(
        np.concatenate(shapes).astype(np.float64), np.concatenate(features).astype(np.float64)
    )


@dataclass(frozen=True)
class Labelled:
    """Crops, the network's outputs on them and the final stage's errors."""

    crops: Crops
    outputs: NetworkOutputs
    errors: FloatArray


def movement(shapes: Tensor) -> Tensor:
    """log(mean point movement of each stage after the first / inter-ocular distance of the last
    stage's shape): (B, K-1) for shapes (B, K, N, 2)."""
    a, b = OUTER_EYE_CORNERS
    last = shapes[:, -1]
    io = torch.linalg.vector_norm(last[:, b] - last[:, a], dim=-1).clamp_min(1e-3)  # (B,)
    steps = torch.linalg.vector_norm(shapes[:, 1:] - shapes[:, :-1], dim=-1).mean(dim=-1)
    return torch.log(steps / io[:, None] + 1e-4)  # (B, K-1)


class ConfidenceHead(nn.Module):
    """Every stage's fc1 activations and log movement, standardised -> linear (or a small MLP)
    -> calibration a z + b -> sigmoid -> (B,)."""

    mean: Tensor
    std: Tensor
    calibration: Tensor

    def __init__(self, num_stages: int, fc_units: int, hidden: int = 0) -> None:
        super().__init__()
        width = num_stages * fc_units + (num_stages - 1)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))  # a, b of a z + b
        layers: list[nn.Module] = (
            [nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1)]
            if hidden > 0
            else [nn.Linear(width, 1)]
        )
        self.net = nn.Sequential(*layers)

    @staticmethod
    def inputs(shapes: Tensor, features: Tensor) -> Tensor:
        """The head's raw inputs (B, K F + K - 1) from shapes (B, K, N, 2), features (B, K, F)."""
        return torch.cat([torch.flatten(features, 1), movement(shapes)], dim=1)

    def logits(self, inputs: Tensor) -> Tensor:
        """The uncalibrated logit z (B,) of raw inputs (B, D)."""
        z: Tensor = self.net((inputs - self.mean) / self.std)
        return z[:, 0]

    def forward(self, shapes: list[Tensor], features: list[Tensor]) -> Tensor:
        """Confidence (B,) from every stage's landmarks (B, N, 2) and fc1 activations (B, F)."""
        z = self.logits(self.inputs(torch.stack(shapes, dim=1), torch.stack(features, dim=1)))
        return torch.sigmoid(self.calibration[0] * z + self.calibration[1])


@dataclass(frozen=True)
class HeadTraining:
    """How the head is fitted (AdamW, one-cycle learning rate, binary cross-entropy)."""

    hidden: int = 0
    epochs: int = 40
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0


def train_head(
    outputs: NetworkOutputs, targets: FloatArray, config: DANConfig, training: HeadTraining
) -> ConfidenceHead:
    """A head fitted to soft targets (M,) in [0, 1] by binary cross-entropy."""
    torch.manual_seed(training.seed)
    head = ConfidenceHead(config.num_stages, config.fc_units, training.hidden)
    x = head.inputs(
        torch.from_numpy(outputs.shapes).float(), torch.from_numpy(outputs.features).float()
    )
    y = torch.from_numpy(targets).float()
    head.mean.copy_(x.mean(dim=0))
    head.std.copy_(x.std(dim=0).clamp_min(1e-3))
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=training.lr, weight_decay=training.weight_decay
    )
    steps = training.epochs * math.ceil(len(y) / training.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, training.lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(training.seed)
    head.train()
    for epoch in range(training.epochs):
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for start in range(0, len(y), training.batch_size):
            batch = order[start : start + training.batch_size]
            loss = loss_fn(head.logits(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        if epoch == training.epochs - 1 or epoch % 10 == 0:
            log.info("head epoch %d: loss %.4f", epoch + 1, total / len(y))
    return head.eval()


def head_logits(head: ConfidenceHead, outputs: NetworkOutputs) -> FloatArray:
    """The head's uncalibrated logits (M,) for network outputs."""
    with torch.inference_mode():
        x = head.inputs(
            torch.from_numpy(outputs.shapes).float(), torch.from_numpy(outputs.features).float()
        )
        return np.asarray(head.logits(x).double().numpy())


def predict(head: ConfidenceHead, outputs: NetworkOutputs) -> FloatArray:
    """The head's (calibrated) confidence (M,) for network outputs."""
    a, b = (float(v) for v in head.calibration)
    return np.asarray(1.0 / (1.0 + np.exp(-(a * head_logits(head, outputs) + b))))


def fit_calibration(
    logits: FloatArray, targets: FloatArray, l2: float = 1e-3, iterations: int = 100
) -> tuple[float, float]:
    """Platt scaling: (a, b) minimising the cross-entropy of sigmoid(a z + b) against targets
    in [0, 1] (Newton's method with step halving; a little L2 for separable data)."""
    x = np.stack([logits, np.ones_like(logits)], axis=1)

    def loss(w: FloatArray) -> float:
        u = x @ w
        # log(1 + e^u) - t u, computed without overflow
        return float((np.logaddexp(0.0, u) - targets * u).sum() + 0.5 * l2 * (w @ w))

    w = np.zeros(2)
    current = loss(w)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ w)))  # sigmoid, without overflow
        gradient = x.T @ (p - targets) + l2 * w
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(30):  # halve the step until the loss falls
            candidate = w - step
            value = loss(candidate)
            if value <= current:
                break
            step = step / 2.0
        else:
            break
        w, converged = candidate, current - value < 1e-12 * max(1.0, abs(current))
        current = value
        if converged:
            break
    return float(w[0]), float(w[1])


def fit_head(
    outputs: NetworkOutputs,
    errors: FloatArray,
    held: Labelled,
    config: DANConfig,
    training: HeadTraining,
    good: float = GOOD_ERROR,
    bad: float = BAD_ERROR,
) -> ConfidenceHead:
    """A head trained on network outputs with their errors (M,), Platt-calibrated on the
    held-out crops."""
    head = train_head(outputs, soft_targets(errors, good, bad), config, training)
    a, b = fit_calibration(head_logits(head, held.outputs), soft_targets(held.errors, good, bad))
    head.calibration.copy_(torch.tensor([a, b]))
    return head


@dataclass(frozen=True)
class SourceModel:
    """The network to add a head to, and the metadata it came with (None for a checkpoint)."""

    dan: DAN
    metadata: ModelMetadata | None


def load_model(path: Path) -> SourceModel:
    """A DAN from an exported ``.onnx`` (with its metadata) or a training checkpoint ``.pt``."""
    config, state = load_weights(path)
    dan = DAN(config)
    missing, unexpected = dan.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the DAN of its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    metadata = None
    if path.suffix == ".onnx":
        metadata = ModelMetadata.from_onnx_props(
            onnx_props(onnx.load(str(path), load_external_data=False)), path
        )
    return SourceModel(dan.eval(), metadata)


def split_faces(
    samples: list[Sample], validation_names: set[str] | None, count: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(head training, held out) samples: the named validation images, else ``holdout``."""
    if validation_names is None:
        return holdout(samples, count, seed)
    held = [s for s in samples if s.name in validation_names]
    if not held:
        raise SystemExit("none of the --validation-images names is a training image")
    return [s for s in samples if s.name not in validation_names], held


def decode(samples: Sequence[Sample]) -> list[Face]:
    """Training faces with their detector boxes (``boxes.csv``), decoded."""
    faces = []
    for s in samples:
        if s.detector_box is None:
            raise SystemExit(
                f"{s.name} has no box in the box file: the head trains on detector boxes"
            )
        faces.append(Face(read_gray(s.image_path), s.landmarks, s.detector_box))
    return faces


def add_head_args(p: argparse.ArgumentParser) -> None:
    """The flags of the network, the data, the held-out split and the head's fit, shared with
    ``training.confidence_study``."""
    a = p.add_argument
    a(
        "--model",
        type=Path,
        required=True,
        help="the network: an exported .onnx or a checkpoint .pt",
    )
    a(
        "--data-root",
        type=Path,
        default=Path("../shared/data/300w"),
        help="300-W root (its training split is used)",
    )
    a("--box-file", type=Path, default=None, help="box file (default: found under --data-root)")
    a(
        "--validation-images",
        type=Path,
        default=None,
        help="validation_images.txt of the network's training run: held out from the head "
        "(default: "
        "training.train's split of --val-count images with --seed)",
    )
    a(
        "--val-count",
        type=positive_int,
        default=100,
        help="images held out when --validation-images is not given",
    )
    a(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the held-out split (as training.train's), the crops and the head",
    )
    a("--epochs", type=positive_int, default=HeadTraining.epochs, help="head training epochs")
    a(
        "--good",
        type=non_negative_float,
        default=GOOD_ERROR,
        help="inter-ocular error up to which a crop's target is 1",
    )
    a(
        "--bad",
        type=positive_float,
        default=BAD_ERROR,
        help="inter-ocular error from which a crop's target is 0",
    )
    a(
        "--face-rejection",
        type=fraction,
        default=0.02,
        help="share of the held-out detector-box faces allowed below the default threshold",
    )
    a(
        "--limit",
        type=non_negative_int,
        default=0,
        help="the first N training images only (0: all; for trials)",
    )
    a(
        "--threads",
        type=non_negative_int,
        default=0,
        help="onnxruntime and torch threads (0: all cores)",
    )


def check_head_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``p.error`` when the flags of ``add_head_args`` disagree with each other."""
    if args.bad <= args.good:
        p.error(
            "--bad must be above --good (the head's target falls from 1 to 0 between them), "
            f"got --good {args.good} and --bad {args.bad}"
        )


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_head_args(p)
    a = p.add_argument
    a(
        "--out",
        type=Path,
        required=True,
        help="ONNX file to write: the model with a confidence output",
    )
    a(
        "--name",
        default=None,
        help="model name in the metadata (default: the source file's, else dan-300w)",
    )
    a(
        "--version",
        default=None,
        help="model version in the metadata (default: the source file's, else 0.0.0)",
    )
    a(
        "--hidden",
        type=non_negative_int,
        default=0,
        help="hidden units of the head (0: logistic regression, the measured choice)",
    )
    a(
        "--threshold",
        type=fraction,
        default=None,
        help="default threshold to write instead of the chosen one",
    )
    a(
        "--fp32",
        action="store_true",
        help="store weights as fp32 (default: fp16, as training.export)",
    )
    return p


def label_crops(dan: DAN, crops: Crops, threads: int) -> Labelled:
    """The network's outputs on crops and its final stage's errors."""
    outputs = run_network(dan, crops.pixels, threads)
    return Labelled(crops, outputs, crop_errors(outputs.shapes[:, -1], crops.landmarks))


def label(dan: DAN, faces: Sequence[Face], plan: CropPlan, seed: int, threads: int) -> Labelled:
    crops = cut_crops(faces, dan.mean_shape.double().numpy(), dan.config.image_size, plan, seed)
    return label_crops(dan, crops, threads)


@dataclass(frozen=True)
class HeadData:
    """The network, the faces the head trains on and the held-out ones (each image and its
    mirror), and the network's outputs on the crops of both."""

    source: SourceModel
    train_faces: list[Face]
    held_faces: list[Face]
    held_images: int
    train: Labelled
    held: Labelled


def load_head_data(args: argparse.Namespace) -> HeadData:
    """The flags of ``add_head_args`` -> the network run on the head's training crops
    (``TRAINING_PLAN``) and on the held-out images' crops (``HELD_OUT_PLAN``)."""
    started = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    source = load_model(args.model)
    split = load_split(args.data_root, "training", args.box_file)
    if not split.samples:
        raise SystemExit(f"no training images under {args.data_root} (looked for {split.absent})")
    samples = split.samples[: args.limit] if args.limit > 0 else split.samples
    names = None
    if args.validation_images is not None:
        names = set(args.validation_images.read_text().split())
    train_samples, held_samples = split_faces(samples, names, args.val_count, args.seed)
    log.info(
        "head trains on %d training images; %d held out for calibration and the threshold",
        len(train_samples),
        len(held_samples),
    )
    train_faces = decode(train_samples)
    train = label(source.dan, train_faces, TRAINING_PLAN, args.seed, args.threads)
    held_faces = decode(held_samples)
    held_faces += [face.mirrored() for face in held_faces]
    held = label(source.dan, held_faces, HELD_OUT_PLAN, args.seed + 1, args.threads)
    log.info(
        "network run on %d crops (%.0f s so far)",
        len(train.crops) + len(held.crops),
        time.perf_counter() - started,
    )
    return HeadData(source, train_faces, held_faces, len(held_samples), train, held)


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Train, calibrate, export; the held-out summary."""
    started = time.perf_counter()
    data = load_head_data(args)
    dan, meta = data.source.dan, data.source.metadata
    train, held = data.train, data.held
    training = HeadTraining(hidden=args.hidden, epochs=args.epochs, seed=args.seed)
    head = fit_head(train.outputs, train.errors, held, dan.config, training, args.good, args.bad)
    a, b = (float(v) for v in head.calibration)
    confidence = predict(head, held.outputs)
    kinds = held.crops.kinds
    faces = kinds == BOX
    if not (faces & (held.errors < RANKING_ERROR)).any():
        log.warning(
            "the network aligns none of the %d held-out faces within %.0f%%: is it trained?",
            int(faces.sum()),
            100 * RANKING_ERROR,
        )
    threshold = (
        args.threshold
        if args.threshold is not None
        else choose_threshold(confidence[faces], args.face_rejection)
    )
    summary = summarise(confidence, held.errors, kinds, threshold)
    summary["images"] = data.held_images  # each also mirrored: twice as many faces
    info = ConfidenceInfo(
        threshold=threshold,
        output_name=CONFIDENCE_OUTPUT_NAME,
        method=METHOD.format(good=args.good, bad=args.bad) + f"; calibration a={a:.4f} b={b:.4f}",
        trained_on=(
            f"{len(train.crops)} crops of {len(data.train_faces)} 300-W training images; calibrated "
            f"and thresholded on {len(held.crops)} crops of the {data.held_images} images held "
            "out from the network's training and their mirror images (the threshold: at most "
            f"{args.face_rejection:.0%} of their detector-box faces below it)"
        ),
        measured={"held_out_training_images": _rounded(summary)},
    )
    name = args.name or (meta.name if meta else "dan-300w")
    version = args.version or (meta.version if meta else "0.0.0")
    export(
        dan,
        args.out,
        name,
        version,
        meta.training_data if meta and meta.training_data else "300-W training split",
        dict(meta.accuracy) if meta else None,
        fp16=not args.fp32,
        confidence=(head, info),
        licence=meta.licence if meta and meta.licence else LICENCE,
    )
    check_export(args.out, dan, head, held.crops.pixels[:16], args.model)
    log.info("done in %.0f s", time.perf_counter() - started)
    return summary


def check_export(
    path: Path, dan: DAN, head: ConfidenceHead, pixels: npt.NDArray[np.uint8], source: Path
) -> None:
    """The written file's landmarks and confidence against the network and head in torch, and
    its landmarks against the source file's when that is an ``.onnx`` (the network unchanged)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = pixels[:, None].astype(np.float32)
    landmarks, confidence = session.run(["landmarks", CONFIDENCE_OUTPUT_NAME], {"images": x})
    with torch.inference_mode():
        shapes, features = dan.forward_features(torch.from_numpy(x))
        expected = head(shapes, features).numpy()
        expected_landmarks = shapes[-1].numpy()
    if source.suffix == ".onnx":
        original = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        (expected_landmarks,) = original.run(["landmarks"], {"images": x})
    drift = float(np.abs(landmarks - expected_landmarks).max())
    confidence_drift = float(np.abs(confidence - expected).max())
    log.info(
        "exported file vs torch: landmarks within %.4f px, confidence within %.4f",
        drift,
        confidence_drift,
    )
    if confidence.shape != (len(pixels),) or confidence_drift > 0.02 or drift > 0.05:
        raise RuntimeError(
            f"{path}: the exported outputs drift from the network's (landmarks {drift:.4f} px, "
            f"confidence {confidence_drift:.4f}, shape {confidence.shape})"
        )


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    check_head_args(parser, args)
    summary = build(args)
    log.info("held-out training images: %s", json.dumps(_rounded(summary)))


if __name__ == "__main__":
    main()
