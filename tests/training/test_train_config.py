"""training.config: every flag checked with a message that names it; args files; resume rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, TrainConfig, get_args_parser, parse_config

RECIPE = Path(__file__).resolve().parents[2] / "training" / "recipes" / "dan-300w-half.args"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--val-every", "0"], "--val-every must be >= 1, got 0"),
        (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--min-lr-ratio", "2"], "--min-lr-ratio must be in [0, 1], got 2.0"),
        (["--rotation-sd", "-3"], "--rotation-sd must be a finite number >= 0"),
        (["--stages", "3"], "--stages must be in [1, 2], got [3]"),
        (["--stage-steps", "5"], "--stage-steps needs one value per --stages entry (2), got 1"),
        (["--stage-minutes", "5", "-1"], "--stage-minutes must be >= 0"),
        (["--init", "a.onnx", "--resume", "b.pt"], "--init and --resume exclude each other"),
        (["--widths", "8", "0", "8", "8"], "--widths needs positive conv widths"),
        (["--noise-sd", "-0.1"], "--noise-sd must be a finite number >= 0, got -0.1"),
        (["--occlusion-probability", "1.5"], "--occlusion-probability must be in [0, 1], got 1.5"),
        (["--ema-decay", "1"], "--ema-decay must be in [0, 1) (0: off), got 1.0"),
        (["--init-stages", "1"], "--init-stages needs --init"),
        (["--init", "a.pt", "--init-stages", "3"], "--init-stages must be in [1, 2], got [3]"),
    ],
)
def test_out_of_range_flags_are_refused_by_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_choices_are_refused_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--schedule", "linear"])
    assert "invalid choice: 'linear'" in capsys.readouterr().err


def test_a_config_built_in_code_meets_the_same_rules() -> None:
    with pytest.raises(ConfigError, match="--loss must be one of"):
        TrainConfig(loss="l2").check()  # type: ignore[arg-type]
    TrainConfig().check()


def test_release_recipe_parses_and_later_flags_override_it(tmp_path: Path) -> None:
    cfg = parse_config([f"@{RECIPE}", "--stage-minutes", "3", "4", "--lr", "2e-4"])
    assert cfg.widths == (32, 64, 128, 256)
    assert cfg.schedule == "cosine" and cfg.batch_size == 32
    assert cfg.stage_minutes == (3.0, 4.0) and cfg.lr == 2e-4
    # Every line of the recipe is a flag the parser knows (no silent typo).
    known = {s for a in get_args_parser()._actions for s in a.option_strings}
    for line in RECIPE.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            assert words[0] in known, words[0]


def test_resume_may_change_the_budget_but_not_the_recipe() -> None:
    saved = TrainConfig(widths=(32, 64, 128, 256), lr=5e-4).to_dict()
    longer = TrainConfig(widths=(32, 64, 128, 256), lr=5e-4, stage_steps=(9, 9))
    assert longer.differences_from(saved) == {}
    other = TrainConfig(widths=(32, 64, 128, 256), lr=1e-3)
    assert other.differences_from(saved) == {"lr": (5e-4, 1e-3)}


def test_a_field_the_checkpoint_predates_counts_as_its_default() -> None:
    saved = TrainConfig().to_dict()
    del saved["loss"]  # saved before --loss existed: the paper's loss then
    assert TrainConfig().differences_from(saved) == {}
    assert TrainConfig(loss="wing").differences_from(saved) == {"loss": ("inter_pupil", "wing")}
