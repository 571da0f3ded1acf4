"""`robofume pretrain` / `robofume evaluate` end to end on a tiny generated dataset."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest
import torch

from deploy.command import main
from robofume import metrics as tags
from robofume.config import load_config

FAST = ["--learner.log_every", "3", "--learner.checkpoint_every", "6"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from robofume.data import generate_dataset

    cfg = load_config("smoke")
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, workers=1, failure_episodes=0))
    out = tmp_path_factory.mktemp("smoke_data")
    generate_dataset(cfg, out)
    return out


def pretrain(dataset, out, steps, *extra):
    argv = ["pretrain", "--preset", "smoke", "--data", str(dataset), "--out", str(out)]
    return main([*argv, "--steps", str(steps), *FAST, *extra])


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert pretrain(dataset, out, 12, "--learner.eval_every", "12") == 0
    return out


def test_pretrain_writes_checkpoints_logs_and_config(full_run):
    ckpts = full_run / "checkpoints"
    assert (ckpts / "ckpt_6.pt").exists() and (ckpts / "ckpt_12.pt").exists()
    assert (ckpts / "latest").read_text().strip() == "ckpt_12.pt"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(full_run / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (tags.CRITIC_LOSS, tags.BC_LOSS, tags.CALQL_BOUND_RATE, tags.CQL_PENALTY):
        assert tag in scalars
    assert [e.step for e in events.Scalars(tags.CRITIC_LOSS)] == [3, 6, 9, 12]
    assert tags.per_task(tags.EVAL_SUCCESS_RATE, "vase_forward") in scalars
    assert tags.LEARNER_UPDATES_PER_SEC in scalars
    assert tags.EVAL_PANEL in events.Tags()["images"]
    assert (full_run / "config.yaml").exists()
    ckpt = load(ckpts / "ckpt_12.pt")
    assert (
        ckpt["step"] == 12
        and ckpt["config_hash"] == load_config("smoke", overrides=ckpt["config"]).hash
    )
    assert {"critic", "actor", "alpha", "cql_alpha"} <= set(ckpt["learner"]["optimizers"])
    assert "sampler" in ckpt["extra"] and "rng" in ckpt["extra"]


def test_resume_is_bit_exact(dataset, full_run, tmp_path):
    assert pretrain(dataset, tmp_path, 6) == 0  # "interrupted" after the first checkpoint
    assert not (tmp_path / "checkpoints" / "ckpt_12.pt").exists()
    assert pretrain(dataset, tmp_path, 12) == 0  # resumes from ckpt_6
    a = load(full_run / "checkpoints" / "ckpt_12.pt")
    b = load(tmp_path / "checkpoints" / "ckpt_12.pt")
    for key, value in a["learner"]["agent"].items():
        assert torch.equal(value, b["learner"]["agent"][key]), key
    opt_a = a["learner"]["optimizers"]["critic"]["state"]
    opt_b = b["learner"]["optimizers"]["critic"]["state"]
    for i in opt_a:
        assert torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"])
    assert torch.equal(a["extra"]["sampler"]["generator"], b["extra"]["sampler"]["generator"])


def test_resume_refuses_a_different_config(dataset, full_run, caplog):
    caplog.set_level(logging.ERROR)
    rc = pretrain(dataset, full_run, 18, "--learner.cql_alpha", "1.0")
    assert rc == 2
    assert "learner.cql_alpha: 5.0 -> 1.0" in caplog.text


def test_resume_ignores_the_failure_rollouts_which_only_the_reward_model_reads(
    dataset, full_run, tmp_path
):
    run = tmp_path / "more_failures"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy2(full_run / "checkpoints" / "ckpt_12.pt", run / "checkpoints" / "ckpt_12.pt")
    more = ("--data.failure_episodes", "120", "--data.failure_modes", "[held, near_place]")
    assert pretrain(dataset, run, 18, *more) == 0
    assert (run / "checkpoints" / "ckpt_18.pt").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        (["--env.image_size", "48"], "32x32 images but env.image_size is 48"),
        (["--env.action_dim", "5"], "4-d actions but env.action_dim is 5"),
        (
            ["--data.target_tasks", "[bench]"],
            "no forward demos of target task(s) ['bench_forward']",
        ),
    ],
)
def test_dataset_config_mismatch_fails_before_training(
    dataset, tmp_path, caplog, override, message
):
    caplog.set_level(logging.ERROR)
    assert pretrain(dataset, tmp_path, 6, *override) == 2
    assert message in caplog.text
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "tb").exists()


def test_nan_loss_stops_with_step_terms_and_checkpoint(dataset, tmp_path, caplog, monkeypatch):
    from learner.buffer import OfflineBuffer

    calls = {"n": 0}
    sample = OfflineBuffer.sample

    def poisoned(self, batch_size):
        batch = sample(self, batch_size)
        calls["n"] += 1
        if calls["n"] >= 8:  # update 8 onwards sees a NaN reward
            batch["reward"] = batch["reward"] * float("nan")
        return batch

    monkeypatch.setattr(OfflineBuffer, "sample", poisoned)
    caplog.set_level(logging.ERROR)
    assert pretrain(dataset, tmp_path, 20) == 3
    assert "non-finite loss at update 8: critic_loss" in caplog.text
    assert "last good checkpoint" in caplog.text and "ckpt_6.pt" in caplog.text
    assert not (tmp_path / "checkpoints" / "ckpt_12.pt").exists()


def test_evaluate_json(full_run, tmp_path, capsys):
    ckpt = full_run / "checkpoints" / "ckpt_12.pt"
    rc = main(["evaluate", str(ckpt), "--episodes", "1", "--json", "--out", str(tmp_path)])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["update"] == 12
    assert list(result["tasks"]) == ["vase_forward"]
    assert result["tasks"]["vase_forward"]["episodes"] == 1
    assert 0.0 <= result["mean_success_rate"] <= 1.0
    assert {p.rsplit("/", 1)[-1] for p in result["media"]} == {"eval_12.png", "eval_12.gif"}
    assert (tmp_path / "eval_12.png").stat().st_size > 0


def test_warm_start_for_online_phase(dataset, full_run):
    """What the online learner does: restore the offline checkpoint under its own config and
    update on a mix of two batch sources."""
    from learner.buffer import OfflineBuffer, mix_batches, split_sizes
    from learner.data import load_pretrain_episodes
    from learner.learner import Learner

    ckpt = full_run / "checkpoints" / "ckpt_12.pt"
    cfg = load_config("smoke", overrides=["--learner.utd_ratio", "2", "--learner.device", "cpu"])
    episodes = load_pretrain_episodes(cfg, dataset)
    offline = OfflineBuffer(episodes, cfg.learner.discount, seed=1)
    online = OfflineBuffer(episodes[:2], cfg.learner.discount, seed=2)  # stands in for replay
    n_off, n_on = split_sizes(cfg.learner.batch_size, cfg.learner.mixing_ratio)

    def batches():
        return mix_batches(offline.sample(n_off), online.sample(n_on), cfg.learner.mixing_ratio)

    learner = Learner.from_checkpoint(ckpt, batch_source=batches, cfg=cfg)
    assert learner.num_updates == 12
    saved = load(ckpt)["learner"]["agent"]
    variables = learner.get_variables()
    assert all(torch.equal(torch.from_numpy(v), saved[k]) for k, v in variables.items())
    metrics = learner.run(2)
    assert learner.num_updates == 14 and torch.isfinite(metrics["critic_total"])
