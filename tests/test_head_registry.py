"""A robot PC that shares no disk with the head: it reports through the head's registry.

The head here: a real Reverb server, a real gRPC reward server that asks for the link token,
and the registry (``deploy/registry.py``), each on loopback, with the head's own run directory.
The robot PC: ``robofume actor`` in its own process, with its own run directory and an empty
HOME, given only the head's address and a copy of the secret.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import subprocess
import sys

import pytest
from actor_support import actor_cfg, publish, replay_size, reward_model, start_replay

from robofume.auth import link_token, secret_path
from robofume.telemetry import HeadClient, HeadUnavailable

pytestmark = pytest.mark.timeout(600)

ROBOT_STEPS = 60


@pytest.fixture
def head(tmp_path):
    from deploy.registry import RegistryServer
    from reward_server.server import start_server_thread

    cfg = actor_cfg(tmp_path / "head")  # makes the head's secret
    cfg = cfg.replace(deploy=dataclasses.replace(cfg.deploy, session="20261207-000000"))
    token = link_token(cfg.deploy)
    replay = start_replay(cfg, tmp_path / "head" / "replay_ckpt")
    reward = start_server_thread(reward_model(), cfg.reward, token=token)
    deploy = dataclasses.replace(
        cfg.deploy, replay_address=replay.address, reward_addresses=(reward.address,)
    )
    cfg = cfg.replace(deploy=deploy)
    registry = RegistryServer(cfg, token, "127.0.0.1", 0).start()
    try:
        yield cfg, registry
    finally:
        registry.stop()
        reward.stop()
        replay.stop(checkpoint=False)


def robot_pc_actor(tmp_path, head_address: str, *more: str) -> subprocess.CompletedProcess:
    robot_run = tmp_path / "robot_pc" / "run"
    env = {**os.environ, "HOME": str(tmp_path / "robot_pc" / "home"), "PYTHONPATH": os.getcwd()}
    overrides = [
        "--env.max_episode_steps", "12", "--actor.human_reset_every", "0",
        "--actor.tick_hz", "-1", "--actor.keyboard", "false", "--actor.report_every_s", "0.5",
        "--actor.pace_to_learner", "false",  # no learner samples here
        "--actor.initial_weights_timeout_s", "60", "--deploy.control_port", "0",
        "--deploy.run_dir", str(robot_run), "--deploy.head_address", head_address,
        "--reward.threshold", "0.9",  # a flag the head was not given: the head's config wins
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "deploy.command", "actor", "--preset", "smoke", "--actor_id",
           "7", "--steps", str(ROBOT_STEPS), *overrides, *more]  # fmt: skip
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or b"")[-4000:]
        raise AssertionError(f"the robot-PC actor did not finish:\n{tail!r}") from None


def test_the_robot_pc_actor_shows_up_in_the_heads_status_and_dashboard(head, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deploy.status import collect
    from robofume import metrics as M
    from robofume.run_dir import RunDir

    cfg, registry = head
    robot_secret = tmp_path / "robot_pc" / "run" / "auth" / "secret"
    robot_secret.parent.mkdir(parents=True)
    shutil.copy(secret_path(cfg.deploy), robot_secret)  # the one file the README says to copy
    publish(cfg, 3)  # the learner's weights, signed, under the head's config hash

    done = robot_pc_actor(tmp_path, registry.address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "taking the head's config" in done.stderr and "reward.threshold" in done.stderr

    # the head's status lists the robot-PC actor, written by the registry, not a shared disk
    robot = collect(cfg, live=False)["actors"]["actor_7"]
    assert robot["via_head"] and robot["steps"] == ROBOT_STEPS and not robot["stale"]
    assert robot["policy_version"] == 3  # it ran the learner's weights: the hashes agree
    assert robot["config_hash"] == cfg.hash and robot["head"]["reachable"]

    # the head's TensorBoard has the actor's scalars and images
    events = EventAccumulator(str(RunDir.of(cfg).tb("actor_7")), size_guidance={"images": 0})
    events.Reload()
    assert M.ACTOR_STEPS_PER_SEC in events.Tags()["scalars"]
    assert M.ACTOR_CAMERA in events.Tags()["images"]
    assert any(t.startswith("Headline/") for t in events.Tags()["scalars"])

    # nothing lost: every step reached the head's replay
    assert replay_size(cfg.deploy.replay_address) == ROBOT_STEPS
    assert (tmp_path / "robot_pc" / "run" / "status" / "actor_7.json").exists()  # its own too


def test_the_registry_refuses_strangers_and_bad_reports(head):
    cfg, registry = head
    client = HeadClient(registry.address, link_token(cfg.deploy))
    services = client.services()
    assert services["replay"] == cfg.deploy.replay_address
    assert services["reward"] == list(cfg.deploy.reward_addresses)
    assert services["config_hash"] == cfg.hash and client.config()["deploy"]["session"]

    with pytest.raises(HeadUnavailable, match="401"):
        HeadClient(registry.address, "wrong").services()
    with pytest.raises(HeadUnavailable, match="plain name"):
        client.heartbeat("../../etc/passwd", {"state": "evil"})
    with pytest.raises(HeadUnavailable, match="does not decode"):
        bad = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really").decode()
        client.summaries("actor_9", [{"kind": "image", "tag": "x", "step": 1, "png": bad}])
    with pytest.raises(HeadUnavailable, match="must be a number"):
        client.summaries("actor_9", [{"kind": "scalar", "tag": "x", "step": 1, "value": "nan?"}])
    with pytest.raises(HeadUnavailable, match="host:port"):
        client.advertise("reward_1", "not an address")
    assert set(registry.registry.received.values()) == {0}

    client.advertise("reward_1", "10.1.2.3:8011")  # a replica on another node
    assert client.services()["reward"] == [*cfg.deploy.reward_addresses, "10.1.2.3:8011"]


def test_a_head_that_does_not_answer_is_one_clear_line(tmp_path):
    cfg = actor_cfg(tmp_path / "head")
    robot_secret = tmp_path / "robot_pc" / "run" / "auth" / "secret"
    robot_secret.parent.mkdir(parents=True)
    shutil.copy(secret_path(cfg.deploy), robot_secret)
    done = robot_pc_actor(tmp_path, "127.0.0.1:9")  # nothing listens on the discard port
    assert done.returncode == 1
    assert "head registry at 127.0.0.1:9 unreachable" in done.stderr
    assert "Traceback" not in done.stderr
