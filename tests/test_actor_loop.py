"""The reset-free loop with the real simulator, a real gRPC reward server and real Reverb."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

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

from actor.episodes import success_steps
from actor.run import run_actor
from robofume import metrics as M
from robofume.data import mc_returns

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = actor_cfg(tmp_path_factory.mktemp("run"))
    replay = start_replay(base, tmp_path_factory.mktemp("replay"))
    reward = start_reward_server(base)
    yield replay.address, reward.address
    reward.stop()
    replay.stop(checkpoint=False)


def config(servers, tmp_path: Path, *overrides: str):
    return with_addresses(actor_cfg(tmp_path, *overrides), *servers)


def sim_threshold(cfg, quantile: float) -> float:
    """A decision threshold that a ``quantile`` share of random sim frames falls below."""
    from robofume.envs import make_env

    env = make_env(cfg.env, cfg.actor.forward_task, seed=1)
    env.reset()
    rng = np.random.default_rng(0)
    frames = np.stack([env.step(rng.uniform(-1, 1, 4))[0]["image"] for _ in range(30)])
    env.close()
    model = reward_model()
    probs = model.score(frames, [model.question_for(cfg.actor.forward_task)] * len(frames))
    return float(np.quantile(probs, quantile))


def check_episode(ep, cfg, model) -> None:
    """Labels belong to their own transition; rewards, terminals and MC returns follow."""
    ep.validate()
    question = model.question_for(ep.task)
    local = model.score(ep.images[1:], [question] * len(ep))
    np.testing.assert_allclose(ep.labels, local, atol=1e-4, err_msg=f"labels of {ep.meta}")
    fired = success_steps(model.decide(ep.labels).astype(np.float32), cfg.actor.success_frames)
    assert np.array_equal(ep.rewards, fired.astype(np.float32))
    assert ep.rewards[:-1].sum() == 0, "an episode ends at its first success"
    assert ep.terminals.tolist() == [False] * (len(ep) - 1) + [bool(ep.rewards[-1])]
    expected = mc_returns(ep.rewards, ep.terminals, cfg.learner.discount)
    np.testing.assert_allclose(ep.mc_returns, expected, rtol=1e-6)


def read_scalars(tb_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_episodes_alternate_with_labels_rewards_and_returns(servers, tmp_path):
    cfg = config(servers, tmp_path)
    model = reward_model()
    model.threshold = sim_threshold(cfg, 0.5)
    publish(cfg, 1)
    tee = Tee(cfg)
    before = replay_size(cfg.deploy.replay_address)
    status = run_actor(cfg, sink_factory=tee, max_steps=60)

    assert status["steps"] == 60 and status["pending_episodes"] == 0
    assert status["policy_version"] == 1 and status["policy_lag"] == 0
    # nothing collected is lost: every transition (tails included) reached Reverb
    assert sum(len(ep) for ep in tee.episodes) == 60
    assert replay_size(cfg.deploy.replay_address) - before == 60
    for ep in tee.episodes:
        check_episode(ep, cfg, model)
        assert ep.kind == "online" and ep.meta["policy_version"] == 1
    main = [ep for ep in tee.episodes if not ep.meta["tail"]]
    tasks = [ep.task for ep in main]
    assert tasks[0] == cfg.actor.forward_task
    assert all(a != b for a, b in itertools.pairwise(tasks)), tasks
    assert {cfg.actor.forward_task, cfg.actor.reset_task} == set(tasks)
    assert any(ep.terminals[-1] for ep in main), "some episode ended on predicted success"
    # status heartbeat and TensorBoard
    saved = json.loads((tmp_path / "status" / "actor_0.json").read_text())
    assert saved["steps"] == 60 and saved["delivered_episodes"] == len(tee.episodes)
    assert saved["reward_model"]["transitions"] == 60
    per_task = saved["reward_model"]["per_task"]  # the labels' quality, task by task
    assert set(per_task) == set(tasks)
    assert sum(t["episodes"] for t in per_task.values()) == len(main)
    tags = read_scalars(tmp_path / "tb" / "actor_0")
    for tag in (
        M.per_task(M.SUCCESS_RATE, cfg.actor.forward_task),
        M.EPISODE_RETURN,
        M.EPISODE_LENGTH,
        M.ACTOR_TICK_JITTER_MS,
        M.ACTOR_POLICY_LAG,
        M.ACTOR_INTERVENTIONS,
        M.ACTOR_LABEL_LAG_STEPS,
        M.REWARD_FALSE_POSITIVE_RATE,
    ):
        assert tag in tags, f"{tag} not in {sorted(tags)}"


def test_step_limit_weights_updates_hash_check_and_rpc_intervention(servers, tmp_path):
    reward_model().threshold = 2.0  # never success: every episode ends at the step limit
    cfg = config(servers, tmp_path, "--actor.total_steps", "0")
    publish(cfg, 1)
    tee = Tee(cfg)
    bg = Background(cfg, sink_factory=tee)
    wait_until(lambda: bg.loop is not None and bg.loop.steps >= 30, 60, "30 steps")
    publish(cfg, 2)
    wait_until(lambda: bg.loop.actor.policy.version == 2, 30, "policy v2")
    steps_at_v2 = bg.loop.steps
    publish(cfg, 3, config_hash="0123456789ab")  # a learner with another config
    status_file = tmp_path / "status" / "actor_0.json"
    wait_until(
        lambda: (
            status_file.exists()
            and 3 in json.loads(status_file.read_text()).get("weights_refused", [])
        ),
        30,
        "v3 refused",
    )
    port = json.loads(status_file.read_text())["control_port"]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/intervene", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError, match="401"):  # no link token: refused
        urllib.request.urlopen(request, timeout=10)
    from actor.control import send_command

    control = cfg.replace(deploy=dataclasses.replace(cfg.deploy, control_port=port))
    assert send_command(control, "intervene")["ok"] is True  # with the deployment's token
    wait_until(lambda: bg.loop.interventions == 1, 30, "the intervention")
    after = max(steps_at_v2 + 30, bg.loop.steps + 5)  # an episode after the restart too
    wait_until(lambda: bg.loop.steps >= after, 60, "more steps")
    status = bg.stop()

    assert status["policy_version"] == 2 and status["weights_refused"] == [3]
    assert status["interventions"] == 1 and status["intervention_sources"] == {"rpc": 1}
    assert status["pending_episodes"] == 0
    assert sum(len(ep) for ep in tee.episodes) == status["steps"]
    limit = cfg.env.max_episode_steps
    versions = [ep.meta["policy_version"] for ep in tee.episodes]
    assert versions[0] == 1 and versions[-1] == 2 and sorted(versions) == versions
    tasks = [ep.task for ep in tee.episodes]
    reasons = [ep.meta["close_reason"] for ep in tee.episodes]
    for i, ep in enumerate(tee.episodes):
        assert not ep.terminals.any() and not ep.meta["tail"]
        if reasons[i] == "step_limit":
            assert len(ep) == limit
            assert tasks[i + 1] != tasks[i]  # the instruction switches
        else:
            assert reasons[i] in ("intervention", "stop")
    k = reasons.index("intervention")
    assert tasks[k + 1] == cfg.actor.forward_task  # restarted with the forward task


class BlockingModel:
    """The reward model behind the server, answering only once released (a slow server)."""

    def __init__(self, model):
        self._model = model
        self.release = threading.Event()

    def score(self, images, questions):
        self.release.wait(60)
        return self._model.score(images, questions)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_tick_is_not_stretched_by_a_slow_reward_server(servers, tmp_path):
    model = reward_model()
    model.threshold = 2.0
    blocking = BlockingModel(model)
    slow = start_reward_server(actor_cfg(tmp_path), blocking)
    try:
        cfg = with_addresses(
            actor_cfg(tmp_path, "--actor.reward_deadline_s", "60", "--actor.label_wait_s", "60"),
            servers[0],
            slow.address,
        )
        publish(cfg, 1)
        tee = Tee(cfg)
        bg = Background(cfg, sink_factory=tee, max_steps=30)
        wait_until(lambda: bg.loop is not None and bg.loop.steps >= 30, 60, "30 steps")
        # every step happened while the first frame's label was still outstanding
        tracker = bg.loop.actor.tracker
        found, pending = tracker.lookup(list(range(30)))
        assert found == {} and pending == 30
        assert bg.loop.steps == 30 and len(tracker.lags) == 0
        blocking.release.set()
        status = bg.join()
    finally:
        blocking.release.set()
        slow.stop()
    assert status["pending_episodes"] == 0
    assert sum(len(ep) for ep in tee.episodes) == 30
    assert all(np.isfinite(ep.labels).all() for ep in tee.episodes)
    assert status["label_lag_steps_max"] >= 20  # the labels came back late, and were kept


def test_ground_truth_reward_ablation(servers, tmp_path):
    cfg = config(servers, tmp_path, "--actor.use_ground_truth_reward", "true")
    publish(cfg, 1)
    tee = Tee(cfg)
    status = run_actor(cfg, sink_factory=tee, max_steps=30)
    assert status["reward"]["reachable"] is None  # no reward server involved
    assert sum(len(ep) for ep in tee.episodes) == 30
    for ep in tee.episodes:
        assert np.array_equal(ep.labels, ep.success.astype(np.float32))
        assert ep.rewards[:-1].sum() == 0 and ep.terminals[-1] == ep.success[-1]
    # the reset task starts where the forward task's scene starts: it succeeds at once
    assert any(ep.task == cfg.actor.reset_task and ep.terminals[-1] for ep in tee.episodes)
