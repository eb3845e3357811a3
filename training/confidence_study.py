"""Variants of the confidence head's training crops, measured on the images held out from the
network's training.

    python -m training.confidence_study --model runs/RUN/best_stage2.pt \
        --validation-images runs/RUN/validation_images.txt \
        --data-root ../shared/data/300w --output runs/RUN/confidence-study.json

``training.confidence`` trains its head on the training images' crops
(``TRAINING_PLAN``), where the network's errors are optimistic: of 1912
detector boxes it fails on a handful, so the head learns failure from strongly
perturbed boxes and non-faces, not from faces that are framed well and still
go wrong. This command measures two harder kinds of crops as extra training
for the head, each cut from the training faces and, to measure on, from the
held-out faces (each image and its mirror):

- ``moderate``: detector boxes moderately perturbed (``MODERATE``), which give
  many borderline errors (5-10% inter-ocular);
- ``degraded``: detector boxes with a degraded appearance (``DEGRADED``: an
  occluding block, blur, noise, contrast), failures of the face rather than of
  the box.

Every variant's head is fitted, calibrated and thresholded as
``training.confidence`` does it (the held-out crops of ``HELD_OUT_PLAN``, at
most ``--face-rejection`` of their faces below the threshold), and measured
on the held-out crops only, never on the test set: AUROC for errors >= 6%
among the faces, natural failures (>= 8%) flagged and their mean rank among
the faces, faces and non-faces below the threshold, perturbed failures
flagged; on the held-out harder crops (honest errors, many more failures):
AUROC and the share of failures flagged. Prints a Markdown table; ``--output``
writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.arrays import FloatArray
from model.config import DANConfig
from model.dan import DAN
from training.arguments import positive_int
from training.augment import Appearance, Face, Perturbation, change_appearance
from training.confidence import (
    HeadTraining,
    Labelled,
    NetworkOutputs,
    add_head_args,
    check_head_args,
    fit_head,
    label_crops,
    load_head_data,
    predict,
)
from training.confidence_crops import (
    BAD_ERROR,
    BOX,
    DETECTOR_JITTER,
    RANKING_ERROR,
    CropPlan,
    auroc,
    choose_threshold,
    cut_crops,
    summarise,
)

log = logging.getLogger("training.confidence_study")

HarderKind = Literal["moderate", "degraded"]
HARDER_KINDS: tuple[HarderKind, ...] = ("moderate", "degraded")
MODERATE = Perturbation(
    rotation_sd_deg=12.0, scale_sd=0.12, translation_sd=0.08, mirror_probability=0.0
)
DEGRADED = Appearance(
    brightness_sd=0.1,
    contrast_sd=0.3,
    blur_probability=0.5,
    noise_sd=0.03,
    occlusion_probability=1.0,
)
# Variants: the harder kinds added to the head's training crops.
VARIANTS: tuple[tuple[HarderKind, ...], ...] = ((), ("moderate",), ("degraded",), HARDER_KINDS)


def harder_crops(
    dan: DAN,
    faces: Sequence[Face],
    kind: HarderKind,
    per_face: int,
    mirror_probability: float,
    seed: int,
    threads: int,
) -> Labelled:
    """``per_face`` crops of ``kind`` of every face, through the network (as ``label``)."""
    plan = CropPlan(
        box=per_face,
        perturbed=0,
        shifted=0,
        background=0,
        box_jitter=MODERATE if kind == "moderate" else DETECTOR_JITTER,
        mirror_probability=mirror_probability,
    )
    crops = cut_crops(faces, dan.mean_shape.double().numpy(), dan.config.image_size, plan, seed)
    if kind == "degraded":
        rng = np.random.default_rng(seed)
        pixels = np.stack([change_appearance(p, rng, DEGRADED) for p in crops.pixels])
        crops = dataclasses.replace(crops, pixels=pixels)
    return label_crops(dan, crops, threads)


def _joined(parts: Sequence[Labelled]) -> tuple[NetworkOutputs, FloatArray]:
    outputs = NetworkOutputs(
        np.concatenate([p.outputs.shapes for p in parts]),
        np.concatenate([p.outputs.features for p in parts]),
    )
    return outputs, np.concatenate([p.errors for p in parts])


def _share_below(confidence: FloatArray, threshold: float) -> float | None:
    return float((confidence < threshold).mean()) if len(confidence) else None


def measure(
    name: str,
    train: Sequence[Labelled],
    held: Labelled,
    held_harder: dict[HarderKind, Labelled],
    config: DANConfig,
    training: HeadTraining,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One variant's head, fitted on ``train``, measured on the held-out crops."""
    outputs, errors = _joined(train)
    head = fit_head(outputs, errors, held, config, training, args.good, args.bad)
    confidence = predict(head, held.outputs)
    faces = held.crops.kinds == BOX
    threshold = choose_threshold(confidence[faces], args.face_rejection)
    row: dict[str, Any] = {"variant": name, "training_crops": len(errors)}
    row |= summarise(confidence, held.errors, held.crops.kinds, threshold)
    failures = confidence[faces & (held.errors >= BAD_ERROR)]
    # Where a failure ranks among the faces: the share of faces less confident than it.
    row["failure_rank"] = (
        float(np.mean([(confidence[faces] < c).mean() for c in failures]))
        if len(failures)
        else None
    )
    for kind, labelled in held_harder.items():
        c = predict(head, labelled.outputs)
        bad = labelled.errors >= BAD_ERROR
        row[f"{kind}_crops"] = len(c)
        row[f"{kind}_failures"] = int(bad.sum())
        row[f"{kind}_auroc_error_6"] = auroc(c, labelled.errors < RANKING_ERROR)
        row[f"{kind}_failures_flagged"] = _share_below(c[bad], threshold)
        row[f"{kind}_right_below_threshold"] = _share_below(c[~bad], threshold)
    return row


def study(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = load_head_data(args)
    dan = data.source.dan
    train_harder, held_harder = {}, {}
    for offset, kind in enumerate(HARDER_KINDS):
        seed = args.seed + 10 * (offset + 1)
        train_harder[kind] = harder_crops(
            dan, data.train_faces, kind, args.per_face, 0.5, seed, args.threads
        )
        held_harder[kind] = harder_crops(
            dan, data.held_faces, kind, args.held_per_face, 0.0, seed + 1, args.threads
        )
    training = HeadTraining(epochs=args.epochs, seed=args.seed)
    rows = []
    for variant in VARIANTS:
        name = " + ".join(("recipe", *variant))
        parts = [data.train, *(train_harder[kind] for kind in variant)]
        rows.append(measure(name, parts, data.held, held_harder, dan.config, training, args))
        log.info("%s: %s", name, json.dumps(rows[-1]))
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def num(value: float | None) -> str:
        return "-" if value is None or np.isnan(value) else f"{value:.3f}"

    head = (
        "| head's training crops | threshold | AUROC >= 6%, faces | failures flagged | "
        "failures' rank | faces below | non-faces below | perturbed failures flagged | "
        + " | ".join(f"{k}: AUROC / failures flagged" for k in HARDER_KINDS)
        + " |"
    )
    lines = [head, "|" + " --- |" * (8 + len(HARDER_KINDS))]
    for r in rows:
        flagged = round((r["failures_flagged"] or 0.0) * r["failures"])
        cells = [
            r["variant"],
            f"{r['threshold']:.2f}",
            num(r["auroc_error_6"]),
            f"{flagged} of {r['failures']}",
            num(r["failure_rank"]),
            pct(r["faces_below_threshold"]),
            pct(r["non_faces_below_threshold"]),
            pct(r["failures_flagged_faces_and_perturbed"]),
            *(
                f"{num(r[f'{k}_auroc_error_6'])} / {pct(r[f'{k}_failures_flagged'])} "
                f"of {r[f'{k}_failures']}"
                for k in HARDER_KINDS
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_head_args(p)
    a = p.add_argument
    a(
        "--per-face",
        type=positive_int,
        default=1,
        help="crops of each harder kind per training face (added to the head's training)",
    )
    a(
        "--held-per-face",
        type=positive_int,
        default=3,
        help="crops of each harder kind per held-out face (measured on)",
    )
    a("--output", type=Path, default=None, help="JSON file for the rows")
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    check_head_args(parser, args)
    rows = study(args)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2) + "\n")
    sys.stdout.write(table(rows) + "\n")


if __name__ == "__main__":
    main()
