"""A real Reverb server on 127.0.0.1: writer, sampler, rate limiter, weights, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from replay_support import coded_episode, replay_config

from replay.server import list_replay_checkpoints, start_replay_server
from robofume.auth import deployment_secret
from robofume.replay_client.errors import (
    EpisodeRejectedError,
    ReplayConfigMismatchError,
    ReplayUnavailableError,
)
from robofume.replay_client.sampler import OnlineSampler
from robofume.replay_client.tables import ONLINE_TABLE, TRANSITION_KEYS
from robofume.replay_client.weights import WeightsClient
from robofume.replay_client.writer import EpisodeWriter

# batch 16 at mixing 0.5 -> 8 online items per update; utd 0.5 -> 4 samples per env step;
# min size 16 and tolerance 0.25 -> the learner may take 16 samples beyond the target.
LIMITS = {
    "learner": {"batch_size": 16, "mixing_ratio": 0.5, "utd_ratio": 0.5},
    "replay": {"min_size_to_sample": 16, "samples_per_insert_tolerance": 0.25},
}

SECRET = b"0" * 64


@pytest.fixture
def cfg(tmp_path):
    return replay_config(tmp_path, **LIMITS)


@pytest.fixture
def server(cfg, tmp_path):
    srv = start_replay_server(cfg, checkpoint_dir=tmp_path / "replay", heartbeat=False)
    yield srv
    srv.stop(checkpoint=False)


def drain(sampler: OnlineSampler, wait_s: float = 1.5) -> list[dict]:
    """Every batch the sampler can get until it has waited ``wait_s`` for the next."""
    out = []
    while (batch := sampler.next(timeout=wait_s)) is not None:
        out.append(batch)
    return out


def test_malformed_items_are_refused_with_clear_errors(cfg, server):
    import reverb

    writer = EpisodeWriter(server.address, cfg)
    bad = coded_episode(cfg, 1, 5)
    bad.images = bad.images[:, :16]  # wrong image height
    with pytest.raises(EpisodeRejectedError, match=r"image has shape \(6, 16, 32, 3\)"):
        writer.write(bad)
    nan = coded_episode(cfg, 2, 5)
    nan.mc_returns[3] = np.nan
    with pytest.raises(EpisodeRejectedError, match="mc_return is NaN or inf at step 3"):
        writer.write(nan)
    unknown = coded_episode(cfg, 3, 5, task="fly_to_the_moon")
    with pytest.raises(EpisodeRejectedError, match="unknown task 'fly_to_the_moon'"):
        writer.write(unknown)
    # a raw Reverb writer is refused by the table signature itself
    client = reverb.Client(server.address)
    raw = client.trajectory_writer(num_keep_alive_refs=1)
    raw.append({"image": np.zeros((8, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match="inconsistent with the table signature"):
        raw.create_item(ONLINE_TABLE, 1.0, {"image": raw.history["image"][-1]})
    assert server.stats()["size"] == 0
    # a writer configured for other images refuses a server started with 32 px
    other = replay_config(cfg.deploy.run_dir, env={"image_size": 64})
    with pytest.raises(ReplayConfigMismatchError, match="image"):
        EpisodeWriter(server.address, other).write(coded_episode(other, 4, 3))


def test_items_pair_step_t_with_t_plus_1_of_the_same_episode(cfg, server):
    writer = EpisodeWriter(server.address, cfg, flush_every=4)
    lengths = {1: 9, 2: 5, 3: 12}
    for eid, steps in lengths.items():
        assert writer.write(coded_episode(cfg, eid, steps)) == steps
    stats = server.stats()
    assert stats["size"] == sum(lengths.values())
    assert stats["episodes"] == 3
    seen = set()
    with OnlineSampler(
        server.address, 8, timeout_s=0.5, secret=deployment_secret(cfg.deploy)
    ) as sampler:
        batches = drain(sampler)
    assert batches, "the sampler produced nothing"
    for batch in batches:
        assert sorted(batch) == sorted(TRANSITION_KEYS)
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 32, 32, 3)
        assert batch["task"].dtype == torch.int64 and batch["terminal"].dtype == torch.float32
        ep, t = batch["image"][:, 0, 0, 0].long(), batch["image"][:, 0, 0, 1].long()
        # next frame: same episode, next step
        assert torch.equal(batch["next_image"][:, 0, 0, 0].long(), ep)
        assert torch.equal(batch["next_image"][:, 0, 0, 1].long(), t + 1)
        assert torch.equal(batch["next_proprio"][:, 1].long(), t + 1)
        assert torch.equal(batch["proprio"][:, 0].long(), ep)
        # per-step fields belong to step t of that episode
        assert torch.allclose(batch["action"][:, 1], t.float() / 1000)
        assert torch.allclose(batch["reward"], t.float() / 100)
        for e, step, term in zip(ep.tolist(), t.tolist(), batch["terminal"].tolist(), strict=True):
            assert step < lengths[e]
            assert term == float(step == lengths[e] - 1)
            seen.add((e, step))
    assert len(seen) > 10


def test_rate_limiter_blocks_the_sampler_at_the_utd_target(cfg, server):
    writer = EpisodeWriter(server.address, cfg)
    with OnlineSampler(
        server.address, 8, timeout_s=0.3, prefetch=1, secret=deployment_secret(cfg.deploy)
    ) as sampler:
        writer.write(coded_episode(cfg, 1, 10))  # below min size: nothing to sample
        assert sampler.next(timeout=1.0) is None
        writer.write(coded_episode(cfg, 2, 10))
        # 20 inserts * 4 samples - (64 - 16) = 32 samples = 4 batches, then it blocks
        assert len(drain(sampler)) == 4
        assert sampler.waiting
        assert server.stats()["samples"] == 32
        writer.write(coded_episode(cfg, 3, 2))  # 2 more steps allow 8 more samples
        assert len(drain(sampler)) == 1
        assert server.stats()["samples"] == 40


def test_writer_reports_an_unreachable_server(cfg):
    import portpicker

    writer = EpisodeWriter(f"127.0.0.1:{portpicker.pick_unused_port()}", cfg, timeout_s=1)
    with pytest.raises(ReplayUnavailableError, match="unreachable"):
        writer.write(coded_episode(cfg, 1, 3))
    assert isinstance(ReplayUnavailableError("x"), ConnectionError)


def test_weights_publish_fetch_and_version(cfg, server):
    client = WeightsClient(server.address, timeout_s=5, secret=SECRET)
    assert client.latest_version() is None
    assert client.fetch() is None
    variables = {
        "encoder.conv0.weight": np.random.default_rng(0).normal(size=(8, 3, 3, 3)),
        "policy.0.bias": np.arange(5, dtype=np.float32),
        "task_table": np.eye(3, dtype=np.float32),
    }
    client.publish(variables, version=10, config_hash="abc123")
    assert client.latest_version() == 10
    version, got = client.fetch()
    assert version == 10
    assert sorted(got) == sorted(variables)
    for name, value in variables.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == value.dtype
    assert client.fetch().config_hash == "abc123"
    assert client.fetch(known_version=10) is None  # unchanged: nothing transferred
    client.publish({"policy.0.bias": np.ones(5, np.float32)}, version=15, config_hash="abc123")
    newer = client.fetch(known_version=10)
    assert newer.version == 15 and list(newer.variables) == ["policy.0.bias"]
    assert server.stats()["weights_published"] == 2
    with pytest.raises(ValueError, match="at least one variable"):
        client.publish({}, version=16, config_hash="abc123")
    with pytest.raises(ValueError, match="config hash"):
        client.publish(variables, version=16, config_hash="")
    with pytest.raises(ValueError, match="deployment secret"):
        WeightsClient(server.address).publish(variables, version=16, config_hash="abc123")


def test_checkpoint_restore(cfg, tmp_path):
    ckpt_dir = tmp_path / "replay_ckpt"
    srv = start_replay_server(cfg, checkpoint_dir=ckpt_dir, heartbeat=False)
    try:
        EpisodeWriter(srv.address, cfg).write(coded_episode(cfg, 5, 7))
        WeightsClient(srv.address, secret=SECRET).publish(
            {"w": np.ones(3, np.float32)}, version=3, config_hash="abc123"
        )
        for _ in range(3):
            srv.checkpoint()
        assert len(list_replay_checkpoints(ckpt_dir)) == 1  # Reverb keeps the newest only
        port = srv.port
    finally:
        srv.stop(checkpoint=False)
    again = start_replay_server(cfg, port=port, checkpoint_dir=ckpt_dir, heartbeat=False)
    try:
        stats = again.stats()
        assert stats["size"] == 7 and stats["inserts"] == 7
        assert WeightsClient(again.address).latest_version() == 3
        EpisodeWriter(again.address, cfg).write(coded_episode(cfg, 6, 30))
        with OnlineSampler(
            again.address, 8, timeout_s=0.3, secret=deployment_secret(cfg.deploy)
        ) as sampler:
            batch = sampler.next(timeout=10)
        assert batch is not None
        assert set(batch["image"][:, 0, 0, 0].tolist()) <= {5, 6}
    finally:
        again.stop(checkpoint=False)
    # a checkpoint restores its own tables: a server for another config must refuse it
    other = replay_config(cfg.deploy.run_dir, env={"image_size": 64}, **LIMITS)
    with pytest.raises(ReplayConfigMismatchError, match=r"image: checkpoint \(\(32, 32, 3\)"):
        start_replay_server(other, checkpoint_dir=ckpt_dir, heartbeat=False)


def test_inserts_wait_when_actors_run_far_ahead(tmp_path):
    # spi 4, min size 16, actors may lead by 2 steps: inserts stop after 16 + 2 items
    limits = {**LIMITS, "replay": {**LIMITS["replay"], "insert_lead_steps": 2}}
    cfg = replay_config(tmp_path, **limits)
    srv = start_replay_server(cfg, checkpoint_dir=tmp_path / "lead", heartbeat=False)
    try:
        writer = EpisodeWriter(srv.address, cfg, timeout_s=1, max_wait_s=1)
        with pytest.raises(ReplayUnavailableError, match="held inserts back"):
            writer.write(coded_episode(cfg, 1, 30))
        assert srv.stats()["size"] == 18
    finally:
        srv.stop(checkpoint=False)


def test_forged_transitions_never_reach_a_batch(cfg, server):
    EpisodeWriter(server.address, cfg).write(coded_episode(cfg, 7, 24))
    forged = coded_episode(cfg, 8, 24)
    forged.rewards[:] = 123.0  # what an attacker on the network would like the learner to see
    EpisodeWriter(server.address, cfg, secret=b"f" * 64).write(forged)  # no deployment secret
    assert server.stats()["size"] == 48
    with OnlineSampler(server.address, 8, timeout_s=0.5, secret=deployment_secret(cfg.deploy)) as s:
        batches = drain(s)
        forged_dropped = s.forged_dropped
    rows = np.concatenate([b["reward"].numpy() for b in batches])
    assert len(rows) > 0 and not np.any(rows == 123.0)
    assert forged_dropped > 0
    assert server.stats()["size"] < 48  # forged items were deleted as they were found
    with pytest.raises(ValueError, match="needs the deployment secret"):
        EpisodeWriter(server.address)


def test_a_wiped_table_is_told_from_a_restart():
    from robofume.replay_client.info import unexplained_shrink

    before = {"size": 140, "epoch": 1}
    assert unexplained_shrink(before, {"size": 0, "epoch": 1}, deleted=0)  # a reset
    assert "shrank from 140 to 60" in unexplained_shrink(before, {"size": 60, "epoch": 1}, 0)
    assert unexplained_shrink(before, {"size": 60, "epoch": 2}, 0) is None  # restored checkpoint
    assert unexplained_shrink(before, {"size": 130, "epoch": 1}, deleted=10) is None  # own deletes
    assert unexplained_shrink(before, {"size": 150, "epoch": 1}, 0) is None
    assert unexplained_shrink({}, {"size": 0, "epoch": 1}, 0) is None
    assert "played back" in unexplained_shrink(before, {"size": 0, "epoch": 0}, 0)  # an old one


def test_a_reset_of_a_real_table_is_reported_as_a_wipe(cfg, server):
    """What the learner reads (table stats and the marker's epoch) before and after another
    client resets the ``online`` table of a real server."""
    import reverb

    from robofume.replay_client.info import stats_client, table_stats, unexplained_shrink
    from robofume.replay_client.marker import read_marker

    def read(client) -> dict:
        return {**table_stats(client, 5.0), "epoch": read_marker(client, 5.0).epoch}

    client = stats_client(server.address)
    EpisodeWriter(server.address, cfg).write(coded_episode(cfg, 1, 40))
    before = read(client)
    assert before["size"] == 40
    assert unexplained_shrink(before, read(client), deleted=0) is None
    reverb.Client(server.address).reset(ONLINE_TABLE)  # an attacker, or a careless script
    why = unexplained_shrink(before, read(client), deleted=0)
    assert why and "shrank from 40 to 0 items without a server restart" in why
