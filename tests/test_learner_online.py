"""The online learner against a real replay server: mixed batches, publishing, crash resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from replay_support import coded_episode, replay_config

from learner.online import NO_CALIBRATION, OnlineLearner, run_online_learner
from replay.server import start_replay_server
from robofume.replay_client.weights import WeightsClient
from robofume.replay_client.writer import EpisodeWriter
from robofume.types import BC_ROWS

SETTINGS = {
    # 8 offline + 8 online rows; utd 0.5 -> 4 online samples per env step
    "learner": {
        "batch_size": 16,
        "mixing_ratio": 0.5,
        "utd_ratio": 0.5,
        "publish_every": 2,
        "checkpoint_every": 3,
        "log_every": 2,
        "device": "cpu",
        "cql_n_actions": 2,
    },
    "replay": {"min_size_to_sample": 16, "sample_timeout_s": 0.3},
}


def offline_dataset(cfg, out):
    """A tiny dataset directory: prior + target demos (values that tell offline rows apart)."""
    from robofume.data import write_episodes
    from robofume.tasks import prior_task_names

    def ep(task, kind, i):
        e = coded_episode(cfg, 200 + i, 6, task=task)
        e.kind, e.mc_returns, e.labels = kind, None, None
        return e

    out.mkdir(parents=True)
    priors = [ep(t, "prior", i) for i, t in enumerate(prior_task_names()[:2])]
    targets = [ep("vase_forward", "target_forward", 5), ep("vase_reset", "target_reset", 6)]
    write_episodes(out / "prior.hdf5", priors)
    write_episodes(out / "target.hdf5", targets)
    write_episodes(out / "failures.hdf5", [ep("vase_forward", "failure", 7)])
    (out / "manifest.json").write_text(json.dumps({"episodes": 5}))
    return out


@pytest.fixture
def setup(tmp_path):
    """Config, a pre-trained checkpoint (2 updates), a replay server with 40 online steps."""
    from learner.pretrain import pretrain

    data = offline_dataset(replay_config(tmp_path), tmp_path / "data")
    cfg = replay_config(tmp_path / "run", data={"dir": str(data)}, **SETTINGS)
    pretrain(cfg, steps=2)
    server = start_replay_server(cfg, checkpoint_dir=tmp_path / "replay", heartbeat=False)
    writer = EpisodeWriter(server.address, cfg)
    writer.write(coded_episode(cfg, 1, 20))
    writer.write(coded_episode(cfg, 2, 20))
    # 40 inserts * 4 - (64 - 16) = 112 samples = 14 updates allowed
    yield cfg, server
    server.stop(checkpoint=False)


def test_online_updates_publish_and_resume_after_a_crash(setup, monkeypatch):
    cfg, server = setup
    weights = WeightsClient(server.address)
    result = run_online_learner(cfg, updates=4, replay_address=server.address)
    assert (result.updates, result.online_updates) == (6, 4)  # 2 pre-training + 4 online
    assert result.published_version == 6
    assert weights.latest_version() == 6
    version, variables = weights.fetch()
    assert version == 6 and variables
    ckpts = Path(cfg.deploy.run_dir) / "online" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("ckpt_*.pt")) == ["ckpt_5.pt", "ckpt_6.pt"]

    # a stopped sampler's prefetched samples count against the UTD budget: add steps
    EpisodeWriter(server.address, cfg).write(coded_episode(cfg, 3, 30))
    # crash at the 4th update: ckpt_8 (online 6) is the last checkpoint, nothing at the crash
    learner = OnlineLearner(cfg, replay_address=server.address)
    assert learner.online_updates == 4 and learner.learner.num_updates == 6
    real_update, calls = learner.learner.update, []

    def crashing_update(batch):
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return real_update(batch)

    monkeypatch.setattr(learner.learner, "update", crashing_update)
    with pytest.raises(RuntimeError, match="simulated crash"):
        learner.run(updates=10, max_seconds=60)
    learner.close()
    assert weights.latest_version() == 8  # published at update 8 before the crash

    resumed = OnlineLearner(cfg, replay_address=server.address)
    try:
        assert resumed.online_updates == 6 and resumed.learner.num_updates == 8
        out = resumed.run(updates=8, max_seconds=60)
        assert (out.updates, out.online_updates) == (10, 8)
        assert resumed.utd_ratio == pytest.approx(8 / 70)
    finally:
        resumed.close()
    assert weights.latest_version() == 10
    status = json.loads((Path(cfg.deploy.run_dir) / "status" / "learner.json").read_text())
    assert status["step"] == 10 and status["policy_version"] == 10


def test_mixed_batch_and_online_calibration_switch(setup):
    cfg, server = setup
    import dataclasses

    off = cfg.replace(learner=dataclasses.replace(cfg.learner, online_calibration=False))
    learner = OnlineLearner(off, replay_address=server.address)
    try:
        batch = learner.next_batch(timeout=10)
        assert batch is not None and batch["image"].shape == (16, 32, 32, 3)
        episode_ids = batch["image"][:, 0, 0, 0]
        assert torch.all(episode_ids[:8] >= 200)  # offline rows first
        assert set(episode_ids[8:].tolist()) <= {1, 2}  # then online rows
        assert torch.all(batch["mc_return"][8:] == NO_CALIBRATION)
        assert torch.all(batch["mc_return"][:8] >= 0)
        assert BC_ROWS not in batch  # bc_on_online: every row imitated
        metrics = learner.learner.update(batch)
        assert np.isfinite(float(metrics["critic_loss"]))
    finally:
        learner.close()


def test_bc_on_offline_rows_only(setup):
    cfg, server = setup
    import dataclasses

    off = cfg.replace(learner=dataclasses.replace(cfg.learner, bc_on_online=False))
    learner = OnlineLearner(off, replay_address=server.address)
    try:
        batch = learner.next_batch(timeout=10)
        assert batch is not None
        assert batch[BC_ROWS].tolist() == [1.0] * 8 + [0.0] * 8  # the offline rows only
        metrics = learner.learner.update(batch)
        assert np.isfinite(float(metrics["bc_loss"]))
    finally:
        learner.close()
    only = off.replace(learner=dataclasses.replace(off.learner, mixing_ratio=0.0))
    learner = OnlineLearner(only, replay_address=server.address)
    try:  # online rows only: nothing to imitate, BC is off rather than on the robot's actions
        batch = learner.next_batch(timeout=10)
        assert batch is not None and batch[BC_ROWS].tolist() == [0.0] * 16
        assert float(learner.learner.update(batch)["bc_loss"]) == 0.0
    finally:
        learner.close()


def test_tensorboard_tags(setup):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from robofume import metrics as tags

    cfg, server = setup
    run_online_learner(cfg, updates=2, replay_address=server.address)
    acc = EventAccumulator(cfg.deploy.run_dir + "/tb/learner")
    acc.Reload()
    found = set(acc.Tags()["scalars"])
    wanted = {
        tags.LEARNER_UPDATES_PER_SEC,
        tags.LEARNER_UTD_RATIO,
        tags.REPLAY_SIZE,
        tags.REPLAY_INSERTS_PER_SEC,
        tags.CRITIC_LOSS,
        tags.BC_LOSS,
    }
    assert wanted <= found, wanted - found
    utd = acc.Scalars(tags.LEARNER_UTD_RATIO)[-1].value
    assert utd == pytest.approx(2 / 40)
