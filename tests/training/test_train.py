"""training.train: a tiny DAN learns, and the whole train -> export -> evaluate loop runs."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from training.augment import Face, make_crop
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.config import ConfigError, parse_config
from training.dataset import load_split, read_gray
from training.evaluate import evaluate
from training.export import export
from training.losses import landmark_loss
from training.train import build_or_resume_model, build_phases, load_data, train

REPO = Path(__file__).resolve().parents[2]


def test_tiny_model_overfits_eight_images(any_data_root: Path, mean_shape: np.ndarray) -> None:
    samples = load_split(any_data_root, "training").samples[:8]
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


@pytest.mark.slow
def test_train_resume_export_evaluate_and_continue(mini_300w: Path, tmp_path: Path) -> None:
    root = mini_300w
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


TINY = ["--widths", "4", "4", "8", "8", "--val-count", "2", "--norm-crops-per-image", "1"]


def _tiny_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data-root", str(root), "--output-dir", str(out), *TINY, "--num-stages", "1",
        "--stages", "1", "--schedule", "constant", "--batch-size", "4", "--val-every", "2",
        "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("average", [[], ["--ema-decay", "0.9"]], ids=["weights", "average"])
def test_resume_continues_exactly_where_the_run_stopped(
    mini_300w: Path, tmp_path: Path, average: list[str]
) -> None:
    root = mini_300w
    straight = tmp_path / "straight"
    train(parse_config(_tiny_args(root, straight, "--stage-steps", "4", *average)))
    stopped = tmp_path / "stopped"
    train(parse_config(_tiny_args(root, stopped, "--stage-steps", "2", *average)))
    saved = load_checkpoint(stopped / "last.pt")
    assert saved["step"] == 2 and len(saved["rng"]) == 1  # one process's random state
    resume = ["--stage-steps", "4", "--resume", str(stopped / "last.pt"), *average]
    train(parse_config(_tiny_args(root, stopped, *resume)))
    a = load_checkpoint(straight / "last.pt")
    b = load_checkpoint(stopped / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, msg=key)  # same crops, dropout, Adam
    if average:
        assert a["average"]["updates"] == b["average"]["updates"] == 4
        for key, value in a["average"]["model"].items():
            torch.testing.assert_close(b["average"]["model"][key], value, msg=f"average {key}")


@pytest.mark.slow
def test_stage_two_from_a_crop_pool_trains_and_resumes_exactly(
    mini_300w: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def args(out: Path, *extra: str) -> list[str]:
        return [
            "--data-root", str(mini_300w), "--output-dir", str(out), *TINY, "--num-stages", "2",
            "--schedule", "constant", "--batch-size", "4", "--val-every", "2", "--no-progress",
            "--crop-pool", "2", *extra,
        ]  # fmt: skip

    straight = tmp_path / "straight"
    with caplog.at_level(logging.INFO, logger="training.crop_pool"):
        train(parse_config(args(straight, "--stage-steps", "2", "4")))
    faces = len(load_split(mini_300w, "training").samples) - 2  # two held out for validation
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"crop pool: {2 * faces} crops"  # for stage 2 only: stage 1 has nothing frozen before it
    ]
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in log] == [
        ("stage1", 2), ("stage2", 2), ("stage2", 4)
    ]  # fmt: skip
    stopped = tmp_path / "stopped"
    train(parse_config(args(stopped, "--stage-steps", "2", "2")))
    resume = ["--stage-steps", "2", "4", "--resume", str(stopped / "last.pt")]
    train(parse_config(args(stopped, *resume)))  # the same pool again, then the same picks
    a = load_checkpoint(straight / "last.pt")["model"]
    b = load_checkpoint(stopped / "last.pt")["model"]
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, msg=key)


def test_with_an_average_the_phase_keeps_the_average_and_logs_both(
    mini_300w: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(parse_config(_tiny_args(mini_300w, run, "--stage-steps", "2", "--ema-decay", "0.9")))
    (record,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert record["best"] == record["stage1_io"] != record["raw_stage1_io"]
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["average"]["updates"] == 2
    for key, value in last["average"]["model"].items():  # best.pt holds the average ...
        assert torch.equal(best["model"][key], value), key
    moved = [k for k, v in last["model"].items() if v.is_floating_point()]
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in moved)  # ... not these


def test_resume_refuses_flags_that_differ_from_the_run(mini_300w: Path, tmp_path: Path) -> None:
    root = mini_300w
    run = tmp_path / "run"
    train(parse_config(_tiny_args(root, run, "--stage-steps", "2")))
    changed = _tiny_args(root, run, "--stage-steps", "4", "--resume", str(run / "last.pt"))
    with pytest.raises(ConfigError, match=r"lr: run 0\.001, now 0\.01"):
        train(parse_config([*changed, "--lr", "1e-2"]))


def test_init_stages_takes_stage_1_and_starts_stage_2_fresh(
    mini_300w: Path, tmp_path: Path
) -> None:
    two = ["--num-stages", "2", "--stages", "1", "2", "--stage-steps", "2", "2"]
    trained = tmp_path / "trained"
    train(parse_config(_tiny_args(mini_300w, trained, *two)))
    source = load_checkpoint(trained / "best.pt")["model"]
    assert source["stages.1.fc2.weight"].abs().sum() > 0  # stage 2 learned something
    cfg = parse_config(
        _tiny_args(mini_300w, tmp_path / "new", *two, "--init", str(trained / "best.pt"),
                   "--init-stages", "1")
    )  # fmt: skip
    model, _ = build_or_resume_model(cfg, load_data(cfg))
    state = model.state_dict()
    for key in ("stages.0.fc2.weight", "stages.0.features.0.weight", "mean_shape", "std_image"):
        assert torch.equal(state[key], source[key]), key
    assert not state["stages.1.fc2.weight"].any()  # a fresh stage starts as the identity update


@pytest.mark.slow
def test_torchrun_trains_data_parallel_on_two_cpu_processes(
    mini_300w: Path, tmp_path: Path
) -> None:
    root = mini_300w
    run = tmp_path / "ddp"
    args = _tiny_args(root, run, "--stage-steps", "4", "--threads", "1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "training.train", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 1 of 2 (gloo, cpu)" in result.stderr
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]  # one log, written by rank 0 alone
    saved = load_checkpoint(run / "last.pt")
    assert len(saved["rng"]) == 2  # both processes' random states
    assert saved["rng"][0]["sampler"] != saved["rng"][1]["sampler"]  # each drew its own crops
    assert (run / "best.pt").is_file()


def test_an_odd_batch_is_refused_before_any_work() -> None:
    from training.distributed import Distributed

    with pytest.raises(ValueError, match="multiple of the number of processes \\(2\\), got 5"):
        Distributed(rank=0, world_size=2).share_of(5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU on this machine)")
def test_training_runs_on_cuda_with_fp16_autocast(mini_300w: Path, tmp_path: Path) -> None:
    root = mini_300w
    run = tmp_path / "cuda"
    train(parse_config(_tiny_args(root, run, "--stage-steps", "2")))
    assert "cuda" in (run / "log.jsonl").read_text() or (run / "best.pt").is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["stage1_io"]) for r in log)


@pytest.mark.parametrize(("flag", "frozen"), [("update", False), ("frozen", True)])
def test_only_the_fine_tuning_phase_can_freeze_batch_norm(flag: str, frozen: bool) -> None:
    cfg = parse_config(["--finetune-steps", "10", "--finetune-batch-norm", flag])
    *stages, finetune = build_phases(cfg)
    assert finetune.name == "finetune" and finetune.frozen_batch_norm is frozen
    assert stages and not any(p.frozen_batch_norm for p in stages)
