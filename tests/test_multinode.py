"""Several machines that share no disk: a Ray head, two GPU-style worker nodes, a robot PC.

Each node is its own `ray start` with its own HOME and its own run directory
(``ROBOFUME_RUN_DIR``); the worker nodes hold only a copy of the deployment secret and of the
Ray token, as the README's "Running on several machines" says. `robofume up` on the head pins
the learner and the reward replica to the nodes offering ``gpu_node``; a robot-PC actor runs
outside Ray and knows only the head's registry. The reward fine-tune and pre-training run on a
worker node too (``deploy.prepare_resources``) and upload what they make. Then the learner's
node is removed: the learner comes back on the other node and resumes from the checkpoint it
had uploaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import portpicker
import pytest

from deploy.nodes import join_node, remove_node

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 900
ROBOT_STEPS = 60

pytestmark = pytest.mark.timeout(DEADLINE_S + 600)


def _run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def _robofume(env: dict[str, str], *args: str, timeout: float = 600):
    return _run([sys.executable, "-m", "deploy.command", *args], env, timeout)


def _ray(env: dict[str, str], *args: str) -> None:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    proc = _run([ray_bin, "start", *args, "--disable-usage-stats"], env, 180)
    assert proc.returncode == 0, f"ray start {args} failed:\n{proc.stdout}\n{proc.stderr}"


def _status(env, overrides) -> dict:
    res = _robofume(env, "status", "--json", *overrides, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def _wait(what: str, check, timeout_s: float, env, overrides) -> dict:
    deadline = time.monotonic() + timeout_s
    report: dict = {}
    while time.monotonic() < deadline:
        report = _status(env, overrides)
        assert (report.get("phases") or {}).get("state") != "failed", report.get("phases")
        if check(report):
            return report
        time.sleep(5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s; last status:\n"
                         + json.dumps(report, indent=1, default=str)[-6000:])  # fmt: skip


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    from deploy.cluster import WORKER_ENV
    from robofume.config import load_config
    from robofume.ray_auth import ray_auth_env

    tmp = tmp_path_factory.mktemp("machines")
    head_run, ports = tmp / "head" / "run", [portpicker.pick_unused_port() for _ in range(8)]
    overrides = [
        "--preset", "smoke", "--deploy.run_dir", str(head_run),
        "--data.dir", str(tmp / "head" / "data"), "--deploy.ray_port", str(ports[0]),
        "--deploy.dashboard_port", str(ports[1]), "--deploy.replay_port", str(ports[2]),
        "--deploy.reward_port", str(ports[3]), "--deploy.control_port", str(ports[4]),
        "--deploy.tensorboard_port", str(ports[5]), "--deploy.head_port", str(ports[6]),
        "--deploy.learner_resources", "{gpu_node: 0.5}",
        "--deploy.reward_resources", "{gpu_node: 0.5}",
        "--deploy.prepare_resources", "{gpu_node: 0.5}",  # fine-tune and pre-train there too
        "--deploy.evaluator_every_s", "0",
        "--learner.checkpoint_every", "20",
        "--actor.total_steps", "1000000",  # the online phase outlives the test: `down` ends it
        "--actor.human_reset_every", "60",
    ]  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # services at normal priority, as `up` starts its own head (Ray's default, nice 15, starves
    # them on a machine as busy as this one)
    base.update(WORKER_ENV, ROBOFUME_NO_PROGRESS="1", PYTHONPATH=str(ROOT), RAY_worker_niceness="0")
    head_env = {**base, "HOME": str(tmp / "head" / "home")}
    made = _robofume(head_env, "secret", *overrides)  # the head makes the secret
    assert made.returncode == 0, made.stderr[-3000:]
    cfg = load_config("smoke", overrides=overrides[2:])
    auth = ray_auth_env(cfg.deploy)  # the head's Ray token
    _ray({**head_env, **auth}, "--head", f"--port={ports[0]}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false")  # fmt: skip
    nodes = []
    try:
        for name in ("gpu_a", "gpu_b"):  # given the secret and the Ray token, nothing else
            nodes.append(join_node(cfg.deploy, tmp / name, {"gpu_node": 1}))
        up = _robofume(head_env, "up", *overrides, timeout=900)
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr[-5000:]}"
        yield {"tmp": tmp, "head": head_run, "nodes": nodes, "env": head_env,
               "overrides": overrides, "ports": ports}  # fmt: skip
    finally:
        _robofume(head_env, "down", *overrides, timeout=300)
        for node in nodes:
            remove_node(node)
        from deploy.cluster import stop_head

        stop_head(cfg.deploy)


def _robot_pc(machines) -> subprocess.CompletedProcess:
    tmp, ports = machines["tmp"], machines["ports"]
    run = tmp / "robot_pc" / "run"
    (run / "auth").mkdir(parents=True, exist_ok=True)
    shutil.copy(machines["head"] / "auth" / "secret", run / "auth" / "secret")
    env = {**machines["env"], "HOME": str(tmp / "robot_pc" / "home")}
    return _robofume(env, "actor", "--preset", "smoke", "--actor_id", "7", "--steps",
                     str(ROBOT_STEPS), "--deploy.run_dir", str(run), "--deploy.head_address",
                     f"127.0.0.1:{ports[6]}", "--deploy.control_port", "0",
                     "--actor.tick_hz", "-1", "--actor.keyboard", "false",
                     "--actor.report_every_s", "0.5", "--actor.pace_to_learner", "false",
                     timeout=600)  # fmt: skip


def test_every_machine_shows_on_the_head_and_a_lost_node_loses_nothing(machines):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from robofume import metrics as M

    env, overrides, head = machines["env"], machines["overrides"], machines["head"]

    def learning(report) -> bool:
        lr = report.get("learner") or {}
        return bool(lr.get("via_head")) and int(lr.get("online_updates") or 0) >= 25

    report = _wait("the learner on a worker node learning", learning, DEADLINE_S, env, overrides)
    learner = report["learner"]
    runs = [n.run_dir for n in machines["nodes"]]
    node = next(n for n in machines["nodes"]
                if str(learner["checkpoint"]).startswith(str(n.run_dir)))  # fmt: skip
    assert any((node.run_dir / "pretrain" / "checkpoints").glob("ckpt_*.pt")), "start not fetched"
    assert any((r / "reward" / "model.pt").exists() for r in runs), "no node fetched the model"
    assert report["reward"] and all(r["healthy"] for r in report["reward"]), report["reward"]
    # the reward fine-tune and pre-training ran on a worker node: it fetched the dataset and
    # uploaded what it made to the head
    phases = report["phases"]["phases"]
    for name in ("reward", "pretrain"):
        assert phases[name]["state"] == "done" and phases[name].get("node"), phases[name]
        assert any((r / "logs" / f"{name}.log").exists() for r in runs), f"{name} not on a worker"
    assert any((r / "data" / "manifest.json").exists() for r in runs), "no node fetched the data"
    assert (head / "reward" / "model.pt").exists(), "the reward model was not uploaded"
    assert any((head / "pretrain" / "checkpoints").glob("ckpt_*.pt")), "no pre-trained upload"

    robot = _robot_pc(machines)
    assert robot.returncode == 0, robot.stderr[-4000:]
    report = _status(env, overrides)
    assert (report["actors"].get("actor_7") or {}).get("via_head"), report["actors"].keys()
    assert report["actors"]["actor_7"]["steps"] >= ROBOT_STEPS
    tags = set()
    for events in (head / "tb").rglob("actor_7/events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    assert any(t.startswith("Headline/") for t in tags), sorted(tags)
    learner_tags = set()
    for events in (head / "tb").rglob("learner/events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        learner_tags |= set(acc.Tags()["scalars"])
    assert M.LEARNER_UTD_RATIO in learner_tags, "the worker's learner is not on the dashboard"
    uploaded = sorted((head / "online" / "checkpoints").glob("ckpt_*.pt"))
    assert uploaded, "the learner uploaded no checkpoint to the head"
    replay = report["replay"]
    assert replay["healthy"] and "epoch" in replay, replay
    assert not report["services"]["replay"].get("via_head"), "replay is not on the head"
    assert report["services"]["learner"].get("via_head"), "the learner is not on a worker node"

    assert remove_node(node) > 0
    survivor = next(n.run_dir for n in machines["nodes"] if n != node)

    def back(report) -> bool:
        lr = report.get("learner") or {}
        return str(lr.get("checkpoint") or "").startswith(str(survivor)) and lr.get("via_head")

    report = _wait("the learner back on the other node", back, DEADLINE_S, env, overrides)
    resumed = sorted((survivor / "online" / "checkpoints").glob("ckpt_*.pt"))
    assert resumed, "the learner did not resume from the uploaded checkpoint"
    assert int(report["learner"]["online_updates"]) >= 20
    # replay, on the head, never restarted: what it held is still there, and it kept growing
    assert report["replay"]["epoch"] == replay["epoch"], "the replay server restarted"
    assert int(report["replay"]["size"]) >= int(replay["size"])
