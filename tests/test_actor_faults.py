"""Faults: replay and reward server killed and restarted mid-run; nothing collected is lost."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from actor_support import (
    Background,
    Tee,
    actor_cfg,
    publish,
    replay_size,
    reward_model,
    start_replay,
    start_reward_server,
    wait_until,
    with_addresses,
)

from actor.run import run_actor

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _stop_actors(monkeypatch):
    """Stop every background actor a test started, also when it fails."""
    started: list[Background] = []
    original = Background.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(Background, "__init__", init)
    yield
    for bg in started:
        bg.stop_event.set()
        bg.thread.join(timeout=30)


@pytest.fixture
def replay(tmp_path):
    server = start_replay(actor_cfg(tmp_path), tmp_path / "replay")
    yield server
    server.stop(checkpoint=False)


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    server = start_reward_server(actor_cfg(tmp_path_factory.mktemp("run")))
    yield server
    server.stop()


def test_replay_killed_and_restarted_mid_run(tmp_path, replay, reward, caplog):
    reward_model().threshold = 2.0
    cfg = with_addresses(
        actor_cfg(tmp_path, "--actor.total_steps", "0", "--actor.local_buffer_episodes", "1",
                  "--env.max_episode_steps", "6"),
        replay.address,
        reward.address,
    )  # fmt: skip
    publish(cfg, 1)
    tee = Tee(cfg)
    bg = Background(cfg, sink_factory=tee)
    wait_until(lambda: bg.loop is not None and bg.loop.delivery.delivered_segments >= 2, 60,
               "two delivered episodes")  # fmt: skip
    port = replay.port
    # the server dies without a checkpoint: the restarted one starts empty, and the actor
    # delivers again what it had delivered before (no checkpoint ever held it)
    replay.stop(checkpoint=False)
    delivery = bg.loop.delivery
    with caplog.at_level(logging.WARNING, logger="actor"):
        wait_until(
            lambda: (
                delivery.spilled >= 2 and delivery.pending >= 4 and not delivery.replay_reachable
            ),
            60,
            "spilled episodes",
        )
    assert any(
        "replay unreachable at" in r.message and "spilled to" in r.message for r in caplog.records
    )
    steps_while_down = bg.loop.steps
    delivered_before = len(tee.episodes)  # nothing can be confirmed while the server is down
    restarted = start_replay(cfg, tmp_path / "replay", port=port)
    try:
        wait_until(lambda: delivery.pending == 0 and bg.loop.steps > steps_while_down + 12, 90,
                   "redelivery")  # fmt: skip
        status = bg.stop()
        assert status["pending_episodes"] == 0 and status["spilled_episodes"] == 0
        assert status["steps"] > steps_while_down and status["replay"]["reachable"]
        assert not list((tmp_path / "spill" / "actor_0").glob("*.npz"))
        firsts = tee.firsts
        delivered = sum(len(ep) for ep in firsts)
        assert delivered == status["steps"]
        # delivered in order, nothing skipped
        seqs = [ep.meta["seq"] for ep in firsts]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # the restarted server holds everything, each episode once
        assert status["replay_restarts_seen"] == 1
        assert status["redelivered_episodes"] == delivered_before
        assert len(tee.episodes) == len(firsts) + delivered_before
        assert replay_size(restarted.address) == delivered
    finally:
        restarted.stop(checkpoint=False)


def test_reward_server_killed_and_restarted_mid_run(tmp_path, replay):
    model = reward_model()
    model.threshold = 2.0
    server = start_reward_server(actor_cfg(tmp_path), model)
    port = int(server.address.rsplit(":", 1)[1])
    cfg = with_addresses(actor_cfg(tmp_path, "--actor.total_steps", "0"), replay.address,
                         server.address)  # fmt: skip
    publish(cfg, 1)
    tee = Tee(cfg)
    bg = Background(cfg, sink_factory=tee)
    restarted = None
    try:
        wait_until(lambda: bg.loop is not None and bg.loop.steps >= 10, 60, "10 steps")
        server.stop()
        delivery = bg.loop.delivery
        wait_until(lambda: delivery.labels_down_since is not None, 60, "labels to be missed")
        steps_while_down = bg.loop.steps
        wait_until(lambda: bg.loop.steps >= steps_while_down + 12, 60, "acting while down")
        assert delivery.pending >= 1
        restarted = start_reward_server(cfg, model, port=port)
        wait_until(lambda: delivery.labels_down_since is None and delivery.pending == 0, 90,
                   "relabelled delivery")  # fmt: skip
        status = bg.stop()
    finally:
        bg.stop_event.set()
        (restarted or server).stop()
    assert status["pending_episodes"] == 0
    assert sum(len(ep) for ep in tee.episodes) == status["steps"]
    assert all(np.isfinite(ep.labels).all() for ep in tee.episodes)
    assert status["reward"]["failures"] > 0 and status["reward"]["reachable"]


def test_episodes_left_at_shutdown_are_delivered_by_the_next_start(tmp_path, replay, reward):
    reward_model().threshold = 2.0
    cfg = with_addresses(
        actor_cfg(tmp_path, "--actor.total_steps", "0", "--actor.shutdown_timeout_s", "0.5"),
        replay.address,
        reward.address,
    )
    publish(cfg, 1)
    port = replay.port
    tee = Tee(cfg)
    bg = Background(cfg, sink_factory=tee)
    wait_until(lambda: bg.loop is not None and bg.loop.steps >= 1, 60, "the first step")
    replay.stop(checkpoint=True)
    wait_until(lambda: bg.loop.steps >= 30, 60, "30 steps")
    first = bg.stop()  # replay still down: what is left goes to disk
    spilled = sorted((tmp_path / "spill" / "actor_0").glob("seg_*.npz"))
    assert first["pending_episodes"] == len(spilled) >= 2
    restarted = start_replay(cfg, tmp_path / "replay", port=port)
    try:
        before = replay_size(restarted.address)
        status = run_actor(cfg, max_steps=5, sink_factory=tee)
        assert status["pending_episodes"] == 0
        assert not list((tmp_path / "spill" / "actor_0").glob("seg_*.npz"))
        total = first["steps"] + 5
        assert sum(len(ep) for ep in tee.episodes) == total
        late = sum(len(ep) for ep in tee.episodes[-(len(spilled) + 1) :])
        assert replay_size(restarted.address) - before == late
        ids = [ep.meta["first_step_id"] for ep in tee.episodes]
        assert ids == sorted(ids) and ids[0] == 0  # in order, step ids continue across runs
    finally:
        restarted.stop(checkpoint=False)


def test_hold_mode_stops_acting_while_replay_is_down(tmp_path, replay, reward):
    reward_model().threshold = 2.0
    cfg = with_addresses(
        actor_cfg(tmp_path, "--actor.total_steps", "0", "--actor.hold_when_unreachable", "true",
                  "--env.max_episode_steps", "4"),
        replay.address,
        reward.address,
    )  # fmt: skip
    publish(cfg, 1)
    tee = Tee(cfg)
    bg = Background(cfg, sink_factory=tee)
    wait_until(lambda: bg.loop is not None and bg.loop.steps >= 5, 60, "5 steps")
    port = replay.port
    replay.stop(checkpoint=True)
    loop = bg.loop
    wait_until(lambda: loop.state.startswith("holding"), 60, "the actor to hold")
    held_at, ticks_at = loop.steps, loop.held_ticks
    wait_until(lambda: loop.held_ticks >= ticks_at + 20, 60, "held ticks")
    assert loop.steps == held_at  # no action while replay is unreachable
    assert loop.state == "holding: replay unreachable"
    restarted = start_replay(cfg, tmp_path / "replay", port=port)
    try:
        wait_until(lambda: loop.steps >= held_at + 8, 60, "acting again")
        status = bg.stop()
        # an episode confirmed after the stopping server's last checkpoint is delivered again
        # (one the checkpoint did hold is a duplicate, which the learner's sampler drops)
        assert replay_size(restarted.address) >= status["steps"]
    finally:
        restarted.stop(checkpoint=False)
    assert status["pending_episodes"] == 0
    assert sum(len(ep) for ep in tee.firsts) == status["steps"]
