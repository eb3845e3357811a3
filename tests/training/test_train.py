"""training.train: a tiny DAN learns, and the whole train -> export -> evaluate loop runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from training.augment import Face, make_crop
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.config import parse_config
from training.dataset import load_split, read_gray
from training.evaluate import evaluate
from training.export import export
from training.losses import landmark_loss
from training.train import train


def test_tiny_model_overfits_eight_images(data_root: Path, mean_shape: np.ndarray) -> None:
    samples = load_split(data_root, "training").samples[:8]
    crops = [
        make_crop(Face(read_gray(s.image_path), s.landmarks, s.box("landmarks")), mean_shape, 112)
        for s in samples
    ]
    x = torch.from_numpy(np.stack([c[0] for c in crops])[:, None]).float()
    y = torch.from_numpy(np.stack([c[1] for c in crops])).float()
    torch.manual_seed(0)
    model = DAN(
        DANConfig(num_stages=1, widths=(8, 16, 16, 32), fc_units=64, dropout=0.0),
        torch.from_numpy(mean_shape).float(),
        x[:, 0].mean(0),
        x[:, 0].std(0).clamp_min(1.0),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(120):
        loss = landmark_loss(model(x)[-1], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}"


def _mini_300w(data_root: Path, folder: Path) -> Path:
    """A 300-W tree of symbolic links to a dozen real training and three test images."""
    for subset, count in (("afw", 6), ("lfpw/trainset", 6), ("lfpw/testset", 3)):
        (folder / subset).mkdir(parents=True)
        for pts in sorted((data_root / subset).glob("*.pts"))[:count]:
            for f in (pts, pts.with_suffix(".jpg"), pts.with_suffix(".png")):
                if f.exists():
                    (folder / subset / f.name).symlink_to(f)
    (folder / "boxes.csv").symlink_to(data_root / "boxes.csv")
    return folder


@pytest.mark.slow
def test_train_resume_export_evaluate_and_continue(data_root: Path, tmp_path: Path) -> None:
    root = _mini_300w(data_root, tmp_path / "300w")
    common = [
        "--data-root", str(root), "--widths", "4", "4", "8", "8", "--batch-size", "4",
        "--val-count", "2", "--val-every", "2", "--norm-crops-per-image", "1", "--no-progress",
    ]  # fmt: skip
    run = tmp_path / "run"
    cfg = parse_config([*common, "--output-dir", str(run), "--stage-steps", "4", "4"])
    best = train(cfg)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in log] == ["stage1", "stage1", "stage2", "stage2"]
    assert {"stage1_io", "stage2_io", "train_loss", "images_per_s"} <= set(log[-1])
    checkpoint = load_checkpoint(best)
    assert list(checkpoint["model_config"]["widths"]) == [4, 4, 8, 8]
    assert checkpoint["train_config"]["batch_size"] == 4

    # Resume the stage-2 phase from last.pt and run it two steps further.
    last = run / "last.pt"
    resumed = parse_config(
        [*common, "--output-dir", str(run), "--stage-steps", "4", "6", "--resume", str(last)]
    )
    train(resumed)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in log[4:]] == [("stage2", 6)]

    model = model_from_checkpoint(run / "best.pt")
    onnx_path = tmp_path / "tiny.onnx"
    export(model, onnx_path)
    summary = evaluate(onnx_path, root, "common", output_dir=tmp_path / "eval")
    assert summary["images"] == 3 and summary["subsets_absent"] == ["helen_test"]
    assert set(summary["stages"]) == {"stage 1", "stage 2"}
    assert (tmp_path / "eval" / "ced.png").stat().st_size > 1000
    assert len((tmp_path / "eval" / "per_image.csv").read_text().splitlines()) == 4

    # A later run starts from the exported file's weights: stage 1 is unchanged at the start.
    cont = tmp_path / "continued"
    cfg = parse_config(
        [
            *common,
            "--output-dir",
            str(cont),
            "--stages",
            "2",
            "--stage-steps",
            "2",
            "--init",
            str(onnx_path),
        ]
    )
    train(cfg)
    continued = model_from_checkpoint(cont / "best.pt")
    for key, value in model.stages[0].state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(
                continued.stages[0].state_dict()[key], value, atol=2e-3, rtol=2e-3, msg=key
            )
