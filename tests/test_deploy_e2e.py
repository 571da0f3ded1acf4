"""The whole system on one machine: `robofume up` on the smoke preset, then `down`.

Real parts only: a local Ray head, the Reverb replay server, a gRPC reward replica, the online
learner and a simulated actor, all on loopback, for a bounded number of actor steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import portpicker
import pytest

from robofume import metrics as tags
from robofume.auth import deployment_secret

ROOT = Path(__file__).resolve().parents[1]
ACTOR_STEPS = 120
PHASES_DEADLINE_S = 600
"""Seconds the four smoke phases get after `up` returns (about 2 minutes on an idle 2-core
machine); the module's timeout leaves room for `up`, this wait, `down` and the checks."""

pytestmark = pytest.mark.timeout(PHASES_DEADLINE_S + 600)


def _robofume(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROBOFUME_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "deploy.command", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _log_tails(folder: Path, lines: int = 30) -> str:
    """The last lines of the run's logs and of the Ray workers' stderr, for a failure message."""
    ray_logs = Path("/tmp/ray/session_latest/logs")
    logs = sorted(folder.rglob("*.log")) + sorted(ray_logs.glob("worker-*.err"))
    parts = []
    for log in logs:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            parts.append(f"--- {log} ---\n" + "\n".join(tail))
    return "\n".join(parts)


def _tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: set[str] = set()
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        found |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("up")
    ports = [portpicker.pick_unused_port() for _ in range(6)]
    overrides = [
        "--preset",
        "smoke",
        "--deploy.run_dir",
        str(tmp / "run"),
        "--data.dir",
        str(tmp / "data"),
        "--deploy.ray_port",
        str(ports[0]),
        "--deploy.dashboard_port",
        str(ports[1]),
        "--deploy.replay_port",
        str(ports[2]),
        "--deploy.reward_port",
        str(ports[3]),
        "--deploy.control_port",
        str(ports[4]),
        "--deploy.tensorboard_port",
        str(ports[5]),
        "--actor.total_steps",
        str(ACTOR_STEPS),
        "--actor.human_reset_every",
        "60",
        "--actor.strip_every",
        "1",
    ]
    up = _robofume("up", *overrides)
    status_dir = tmp / "run" / "status"  # what existed the moment `up` returned
    at_up = {p.stem: json.loads(p.read_text()) for p in status_dir.glob("*.json")}
    report: dict = {}
    text = ""
    try:
        assert up.returncode == 0, f"robofume up failed:\n{up.stdout}\n{up.stderr[-5000:]}"
        deadline = time.monotonic() + PHASES_DEADLINE_S  # the phases run after `up` returns
        finished = False
        while time.monotonic() < deadline:
            status = _robofume("status", "--json", *overrides, timeout=120)
            assert status.returncode == 0, status.stderr[-3000:]
            report = json.loads(status.stdout)
            runner = report.get("phases") or {}
            assert runner.get("state") != "failed", f"a phase failed: {runner}"
            actor = report["actors"].get("actor_0") or {}
            if (
                actor.get("state") == "stopped"
                and (report.get("learner") or {}).get("step")
                and runner.get("state") == "finished"
            ):
                finished = True
                break
            time.sleep(5)
        text = _robofume("status", "--no-probe", *overrides, timeout=120).stdout
        if not finished:
            pytest.fail(
                f"the phases did not finish within {PHASES_DEADLINE_S} s of `up`:\n{text}\n"
                + _log_tails(tmp / "run" / "logs")
            )
    finally:  # down before the checks: it flushes TensorBoard and checkpoints the replay
        down = _robofume("down", *overrides, timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]
    return {
        "report": report,
        "run": tmp / "run",
        "overrides": overrides,
        "up": up,
        "at_up": at_up,
        "text": text,
    }


def test_up_prints_where_to_look(cluster):
    out = cluster["up"].stdout
    assert "TensorBoard" in out and "Ray dashboard" in out and "run dir" in out
    assert "asks for a token: paste the contents of" in out and "ray/auth_token" in out


def test_up_returned_while_the_phases_ran(cluster):
    """`up` starts the cluster and the phase runner and returns: nothing pre-trained yet."""
    at_up = cluster["at_up"]
    assert "phases" in at_up, "up returned before the phase runner's first heartbeat"
    assert at_up["phases"]["phases"]["pretrain"]["state"] not in ("done", "reused")
    assert "learner" not in at_up and "actor_0" not in at_up


def test_status_shows_each_phase_with_its_progress(cluster):
    runner = cluster["report"]["phases"]
    assert runner["state"] == "finished"
    assert list(runner["phases"]) == list(tags.PHASE_PROGRESS)
    for name, phase in runner["phases"].items():
        assert phase["state"] == "done", (name, phase)
        assert phase["total"] and phase["done"] == phase["total"], (name, phase)
        assert phase["rate"] and phase["eta_s"] == 0.0, (name, phase)
    assert runner["phases"]["pretrain"]["total"] == 20  # smoke preset: learner.steps
    assert runner["phases"]["online"]["total"] == ACTOR_STEPS
    lines = [line.split() for line in cluster["text"].splitlines() if line.startswith("phase ")]
    assert [(w[1], w[2]) for w in lines] == [(name, "done") for name in tags.PHASE_PROGRESS]


def test_actor_alternated_tasks_and_delivered_labelled_episodes(cluster):
    actor = cluster["report"]["actors"]["actor_0"]
    assert actor["state"] == "stopped" and actor["steps"] == ACTOR_STEPS
    closed = actor["episodes_closed"]
    assert closed.get("vase_forward", 0) >= 1 and closed.get("vase_reset", 0) >= 1
    assert actor["delivered_episodes"] >= 2 and actor["pending_episodes"] == 0
    assert actor["reward"]["reachable"] and actor["reward"]["failures"] == 0


def test_learner_updated_and_actor_followed_its_weights(cluster):
    report = cluster["report"]
    learner = report["learner"]
    pretrain_steps = 20  # smoke preset: learner.steps
    assert learner["step"] > pretrain_steps and learner["online_updates"] > 0
    assert report["actors"]["actor_0"]["policy_version"] > pretrain_steps
    assert report["replay"]["inserts"] >= ACTOR_STEPS - 40  # the tail may be a open episode


def test_services_sized_their_threads_to_their_share_at_normal_priority(cluster):
    from robofume.config import load_config
    from robofume.threads import thread_share

    cfg = load_config("smoke", overrides=cluster["overrides"][2:])
    services = cluster["report"]["services"]
    assert services["learner"]["threads"] == thread_share(cfg, "learner")
    assert services["actor_0"]["threads"] == thread_share(cfg, "actor")
    for name in ("learner", "actor_0", "replay"):  # not Ray's default 15 behind TensorBoard
        assert services[name]["niceness"] == cfg.deploy.worker_niceness == 0, name


def _filler_episode(cfg, steps: int):
    """A failed episode of blank frames: inserting it lets the rate limiter allow samples."""
    from robofume.types import Episode

    s = cfg.env.image_size
    return Episode(
        images=np.zeros((steps + 1, s, s, 3), np.uint8),
        proprio=np.zeros((steps + 1, 4), np.float32),
        actions=np.zeros((steps, cfg.env.action_dim), np.float32),
        rewards=np.zeros(steps, np.float32),
        terminals=np.zeros(steps, bool),
        success=np.zeros(steps, bool),
        task="vase_forward",
        language="put the vase in the correct bin",
        kind="online",
        mc_returns=np.zeros(steps, np.float32),
        labels=np.zeros(steps, np.float32),
    )


def test_transitions_in_replay_carry_rewards_and_mc_returns(cluster):
    """Restore the replay checkpoint `down` wrote and look at the actor's transitions."""
    from replay.server import start_replay_server
    from robofume.config import load_config
    from robofume.replay_client.sampler import OnlineSampler
    from robofume.replay_client.writer import EpisodeWriter

    cfg = load_config("smoke", overrides=cluster["overrides"][2:])
    server = start_replay_server(cfg, port=0, heartbeat=False)
    try:
        assert server.stats()["size"] >= ACTOR_STEPS - 40
        EpisodeWriter(server.address, cfg).write(_filler_episode(cfg, 60))
        with OnlineSampler(
            server.address, 64, timeout_s=5, secret=deployment_secret(cfg.deploy)
        ) as sampler:
            batch = sampler.next(timeout=60)
        assert batch is not None, "the restored replay server gave no batch"
        from_actor = batch["image"].reshape(64, -1).amax(dim=1).numpy() > 0
        assert from_actor.sum() >= 8, "expected most samples to be the actor's transitions"
        reward = batch["reward"].numpy()[from_actor]
        terminal = batch["terminal"].numpy()[from_actor]
        mc = batch["mc_return"].numpy()[from_actor]
        assert set(np.unique(reward)) <= {0.0, 1.0}
        assert np.all(np.isfinite(mc)) and np.all(mc >= reward - 1e-6)
        assert np.all(mc <= 1 / (1 - cfg.learner.discount) + 1e-4)
        assert np.all(reward[terminal > 0] == 1.0)  # an episode only terminates on success
        assert batch["next_image"].shape == batch["image"].shape
    finally:
        server.stop(checkpoint=False)


def test_each_up_is_one_session_with_one_run_per_component(cluster):
    """TensorBoard lists ``tb/<session>/<component>``: runs of another `up` never mix in."""
    sessions = [p for p in (cluster["run"] / "tb").iterdir() if p.is_dir()]
    assert len(sessions) == 1, sessions
    session = sessions[0].name
    assert session in cluster["up"].stdout
    runs = {p.name for p in sessions[0].iterdir()}
    assert runs == {
        "phases", "reward_finetune", "pretrain", "reward_0", "learner", "actor_0", "evaluator"
    }  # fmt: skip
    assert not list((cluster["run"] / "pretrain").glob("**/events.out.tfevents.*"))
    assert not list((cluster["run"] / "reward").glob("**/events.out.tfevents.*"))
    actor = json.loads((cluster["run"] / "status" / "actor_0.json").read_text())
    assert actor["session"] == session and actor["env_steps"] == actor["steps"] == ACTOR_STEPS


def _session_tb(run: Path) -> Path:
    (session,) = [p for p in (run / "tb").iterdir() if p.is_dir()]
    return session


def test_every_component_wrote_its_tensorboard_tags(cluster):
    run = cluster["run"]
    tb = _session_tb(run)
    learner = _tags(tb / "learner")
    assert {
        tags.CRITIC_LOSS,
        tags.ACTOR_LOSS,
        tags.BC_LOSS,
        tags.CQL_PENALTY,
        tags.LEARNER_UPDATES_PER_SEC,
        tags.LEARNER_UTD_RATIO,
        tags.HEADLINE_UTD_TARGET,
        tags.REPLAY_SIZE,
    } <= learner
    actor = _tags(tb / "actor_0")
    assert {
        tags.EPISODE_LENGTH,
        tags.ACTOR_STEPS_PER_SEC,
        tags.ACTOR_POLICY_LAG,
        tags.ACTOR_LABEL_LAG_STEPS,
        tags.ACTOR_INTERVENTIONS,
        tags.ACTOR_WEIGHTS_REFUSED,  # refused forged/old weights, on the dashboard
        tags.ACTOR_REPLAY_RESTARTS,
        tags.ACTOR_REDELIVERED_EPISODES,
    } <= actor
    assert any(t.startswith(tags.SUCCESS_RATE) for t in actor)
    assert any(t.startswith(tags.PREDICTED_SUCCESS_RATE) for t in actor)
    assert any(t.startswith(tags.EPISODES) for t in actor)
    assert tags.ACTOR_CAMERA in actor
    assert any(t.startswith(tags.ACTOR_EPISODE_STRIP) for t in actor)
    assert any(t.startswith(tags.REWARD_FALSE_POSITIVE_RATE) for t in actor)
    reward = _tags(tb / "reward_0")  # the replica's own serving metrics
    assert {tags.REWARD_LATENCY_MS, tags.REWARD_BATCH_SIZE} <= reward
    assert set(tags.PHASE_PROGRESS.values()) <= _tags(tb / "phases")
    finetune = _tags(tb / "reward_finetune")  # held-out rates, never in the online charts
    assert {tags.HELD_OUT_FALSE_POSITIVE_RATE, tags.REWARD_TRAIN_LOSS} <= finetune
    assert tags.REWARD_FALSE_POSITIVE_RATE not in finetune
    evaluator = _tags(tb / "evaluator")  # ground truth on the evaluation seeds, while it learns
    assert {
        tags.per_task(tags.EVAL_TRUE_SUCCESS, "vase_forward"),
        tags.EVAL_TRUE_SUCCESS_ALL_FORWARD,
        tags.EVAL_POLICY_VERSION,
        tags.EVAL_PANEL,
    } <= evaluator
    heartbeat = json.loads((run / "status" / "evaluator.json").read_text())
    assert heartbeat["evaluations"] >= 1 and heartbeat["last"]["policy_version"] >= 20
