"""`robofume <command> --help` lists every config field it accepts, and those flags work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.command import build_parser, parse_args
from robofume.cli import config_from_args
from robofume.config import ConfigError, ExperimentConfig, LearnerConfig
from robofume.config.fields import attribute_docs, config_fields, format_default

ROOT = Path(__file__).resolve().parents[1]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_pretrain_help_lists_utd_ratio_with_its_docstring_and_default():
    out = subprocess.run(
        [sys.executable, "-m", "deploy.command", "pretrain", "--help"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "400"},  # no wrapping: the docstring stays one line
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    doc = attribute_docs(LearnerConfig)["utd_ratio"]
    assert doc
    assert "--learner.utd_ratio FLOAT" in out
    default = format_default(LearnerConfig().utd_ratio)
    assert f"{_flat(doc)} (default: {default})" in _flat(out)
    assert "config section learner" in out
    usage = out.split("\n\n")[0]
    assert "--learner." not in usage and "[--section.field VALUE ...]" in usage
    # the learner section is listed by concern, utd_ratio with the schedule
    schedule = out.index("config section learner: the schedule")
    assert out.index("config section learner: the objective") < schedule
    assert (
        schedule
        < out.index("--learner.utd_ratio")
        < out.index("config section learner: the hardware")
    )


def test_the_big_sections_are_split_by_concern():
    from robofume.config.reward import RewardConfig

    for cls in (LearnerConfig, RewardConfig):
        fields = config_fields(cls)
        concerns = {f.concern for f in fields}
        assert None not in concerns and len(concerns) >= 3  # every field in one concern class
        for concern in concerns:
            n = sum(f.concern is concern for f in fields)
            assert n <= 25, f"{concern.__name__} has {n} fields"


def test_every_config_field_has_a_docstring():
    missing = [f.path for f in config_fields(ExperimentConfig) if not f.doc]
    assert not missing, f"fields without a docstring: {missing}"


def _leaf_parsers(parser, prefix=()):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            if sub._subparsers:
                yield from _leaf_parsers(sub, (*prefix, name))
            else:
                yield (*prefix, name), sub


def test_every_subcommand_taking_overrides_lists_every_field():
    fields = {f"--{f.path}" for f in config_fields(ExperimentConfig) if "." in f.path}
    covered = []
    for name, sub in _leaf_parsers(build_parser()):
        options = set(sub._option_string_actions)
        if "--preset" in options or name == ("evaluate",):
            assert fields <= options, name
            covered.append(" ".join(name))
    assert {"pretrain", "up", "down", "status", "generate", "reward finetune"} <= set(covered)


def test_declared_overrides_reach_the_config():
    args = parse_args(
        [
            "pretrain",
            "--preset",
            "smoke",
            "--learner.utd_ratio",
            "4",
            "--env.image_size=48",
            "--network.hidden_dims",
            "64,64",
            "--network.log_std_min",
            "-5",
            "--env.workspace_low=-0.1,0,0.1",
        ]
    )
    assert not any(k.startswith("override:") for k in vars(args))
    cfg = config_from_args(args)
    assert cfg.learner.utd_ratio == 4.0 and cfg.env.image_size == 48
    assert cfg.network.hidden_dims == (64, 64) and cfg.network.log_std_min == -5.0
    assert cfg.env.workspace_low == (-0.1, 0.0, 0.1)
    assert cfg.learner.batch_size == 16  # the preset's value where nothing overrides it


def test_misspelt_field_is_still_named():
    args = parse_args(["pretrain", "--learner.utd_rati0", "4"])
    with pytest.raises(ConfigError, match="utd_rati0"):
        config_from_args(args)


def test_evaluate_keeps_its_overrides():
    args = parse_args(["evaluate", "ckpt.pt", "--env.max_episode_steps", "100"])
    assert args.checkpoint == "ckpt.pt"
    assert args.overrides == ["--env.max_episode_steps", "100"]
