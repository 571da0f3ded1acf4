"""The actor's parts on their own, through their protocols: no Reverb, no gRPC, no MuJoCo.

The label tracker, label completion and weights puller each take a collaborator (a labeller,
a weights source, a policy); here those are small fakes that resolve futures and hand out
weights when the test says so, so every branch (late label, lost label, dead server, forged
or older weights) is reached deterministically and in milliseconds.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from actor.completion import LabelCompletion
from actor.episodes import Segment
from actor.labels import LabelTracker
from robofume.auth import sign_manifest
from robofume.weights_puller import WeightsPuller

FRAME = np.zeros((8, 8, 3), np.uint8)
SECRET = b"s" * 64


def _result(probs):
    probs = np.asarray(probs, np.float32)
    return SimpleNamespace(probs=probs, decisions=probs >= 0.5, version="rm-1")


class FakeLabeller:
    """Futures the test resolves by hand; ``score`` answers ``sync_probs`` or raises ``down``."""

    def __init__(self):
        self.futures: list[Future] = []
        self.sync_calls: list[int] = []
        self.sync_prob = 0.9
        self.down: Exception | None = None

    def score_async(self, frames, task):
        if self.down is not None:
            raise self.down
        future: Future = Future()
        self.futures.append(future)
        return future

    def score(self, frames, task):
        if self.down is not None:
            raise self.down
        self.sync_calls.append(len(frames))
        return _result([self.sync_prob] * len(frames))


def test_tracker_files_labels_under_step_ids_with_their_lag():
    clock = {"step": 0}
    labeller = FakeLabeller()
    tracker = LabelTracker(labeller, step_clock=lambda: clock["step"])
    for step in range(3):
        tracker.submit(step, FRAME, "vase_forward")
    assert tracker.lookup([0, 1, 2]) == ({}, 3)
    clock["step"] = 5  # the robot went on while the labels were computed
    labeller.futures[1].set_result(_result([0.8]))
    (label,) = tracker.drain()
    assert (label.step_id, label.decision, label.version, label.lag_steps) == (1, True, "rm-1", 3)
    assert tracker.drain() == []  # each label is drained once
    found, pending = tracker.lookup([0, 1, 2])
    assert set(found) == {1} and pending == 2
    tracker.forget([0, 1, 2])
    assert tracker.lookup([0, 1, 2]) == ({}, 0)


def test_tracker_tells_when_the_reward_server_stops_and_starts_answering():
    labeller = FakeLabeller()
    tracker = LabelTracker(labeller, step_clock=lambda: 0)
    tracker.submit(0, FRAME, "vase_forward")
    labeller.futures[0].set_exception(ConnectionError("replica gone"))
    assert not tracker.reachable and "replica gone" in tracker.last_error
    assert tracker.lookup([0]) == ({}, 0)  # no longer in flight: completion asks again
    labeller.down = ConnectionError("channel closed")
    tracker.submit(1, FRAME, "vase_forward")  # fails fast: never blocks the tick
    assert tracker.consecutive_failures == 2
    labeller.down = None
    tracker.probe(FRAME, "vase_forward")
    labeller.futures[-1].set_result(_result([0.1]))
    assert tracker.reachable and tracker.last_error == ""


def _segment(steps: int) -> Segment:
    seg = Segment(0, "vase_forward", "put the vase in the bin", [FRAME], [np.zeros(4)])
    for t in range(steps):
        seg.add(np.zeros(4), FRAME, np.zeros(4), step_id=t, gt_success=False)
    return seg


def test_completion_waits_for_labels_in_flight_then_asks_again_for_the_lost_ones():
    labeller = FakeLabeller()
    tracker = LabelTracker(labeller, step_clock=lambda: 4)
    completion = LabelCompletion(tracker, label_wait_s=60.0)
    seg = _segment(4)
    for t in range(4):
        tracker.submit(t, FRAME, seg.task)
    labeller.futures[0].set_result(_result([0.2]))
    labeller.futures[1].set_exception(TimeoutError("lost"))  # never comes back
    seg.closed_at = time.monotonic()
    assert not completion.complete(seg, lambda: "")  # 2 still in flight: wait
    assert seg.missing() == [1, 2, 3] and labeller.sync_calls == []
    seg.closed_at = time.monotonic() - 61  # waited long enough
    assert completion.complete(seg, lambda: "")
    assert labeller.sync_calls == [3] and seg.missing() == []
    assert seg.decisions == [0.0, 1.0, 1.0, 1.0]


def test_completion_keeps_the_segment_while_the_reward_server_is_down():
    labeller = FakeLabeller()
    completion = LabelCompletion(LabelTracker(labeller, step_clock=lambda: 0), label_wait_s=0)
    seg = _segment(2)
    labeller.down = ConnectionError("no replica")
    backlog = []
    assert not completion.complete(seg, lambda: backlog.append(1) or "1 episode waits")
    assert completion.down_since is not None and "no replica" in completion.last_error
    assert backlog == [1] and seg.missing() == [0, 1]
    labeller.down = None
    assert completion.complete(seg, lambda: "") and completion.down_since is None
    assert completion.last_error == ""  # status tells the present, not the outage


@dataclass
class FakePolicy:
    version: int = -1
    loaded: list[int] = field(default_factory=list)

    def load_variables(self, variables, version):
        if "w" not in variables:
            raise KeyError("w")
        self.version = version
        self.loaded.append(version)

    def act(self, obs, task_name):
        return np.zeros(4, np.float32)


class FakeSource:
    """Serves whatever the test published last; ``down`` makes every call fail."""

    def __init__(self):
        self.item = None
        self.fetches = 0
        self.down = False

    def publish(self, version, session=1, config_hash="h", secret=SECRET, variables=None):
        variables = variables if variables is not None else {"w": np.full(3, version, np.float32)}
        names = sorted(variables)
        manifest = {"version": version, "session": session, "config_hash": config_hash,
                    "names": names}  # fmt: skip
        manifest = sign_manifest(secret, manifest, [variables[n] for n in names])
        self.item = SimpleNamespace(version=version, variables=variables, manifest=manifest)

    def latest_version(self):
        if self.down:
            raise ConnectionError("replay down")
        return None if self.item is None else self.item.version

    def fetch(self):
        self.fetches += 1
        return self.item


def _puller():
    source, policy = FakeSource(), FakePolicy()
    return source, policy, WeightsPuller(source, policy, "h", SECRET, poll_s=0.01)


def test_puller_loads_signed_weights_once_and_follows_the_learner():
    source, policy, puller = _puller()
    puller.check_once()
    assert policy.version == -1 and source.fetches == 0  # nothing published yet
    source.publish(3)
    puller.check_once()
    puller.check_once()  # same version: not fetched again
    assert policy.loaded == [3] and source.fetches == 1 and puller.policy_lag == 0
    source.publish(7)
    puller.check_once()
    assert policy.version == 7 and puller.running == (1, 7)


@pytest.mark.parametrize(
    ("publish", "reason"),
    [
        ({"secret": b"x" * 64}, "forged"),
        ({"config_hash": "other"}, "config_hash"),
        ({"session": 0}, "older"),  # an old session's publish replayed
        ({"variables": {"v": np.zeros(3, np.float32)}}, "shape"),
    ],
)
def test_puller_refuses_bad_weights_and_keeps_acting(publish, reason):
    source, policy, puller = _puller()
    source.publish(5)
    puller.check_once()
    source.publish(9, **publish)
    puller.check_once()
    assert policy.version == 5 and puller.refusals == {reason: 1}
    assert "refusing policy weights v9" in puller.last_error
    puller.check_once()  # a refused version is not fetched again right away
    assert puller.refusals == {reason: 1}


def test_puller_reports_an_unreachable_source_and_recovers():
    source, policy, puller = _puller()
    source.publish(1)
    source.down = True
    puller.check_once()
    assert not puller.reachable and "replay down" in puller.last_error and policy.version == -1
    source.down = False
    puller.check_once()
    assert puller.reachable and policy.version == 1 and puller.last_error == ""


def test_a_refusal_is_reported_until_newer_authentic_weights_load():
    source, policy, puller = _puller()
    source.publish(5)
    puller.check_once()
    source.publish(9, secret=b"x" * 64)  # forged
    puller.check_once()
    assert "refusing policy weights v9" in puller.last_error
    source.down = True
    puller.check_once()
    source.down = False
    puller.check_once()  # reachable again: the refusal still stands
    assert "refusing policy weights v9" in puller.last_error
    source.publish(10)
    puller.check_once()
    assert policy.version == 10 and puller.last_error == ""


def test_a_restarted_actor_continues_its_steps_within_its_session(tmp_path):
    import dataclasses

    from actor.run import steps_before_restart
    from robofume.config import ExperimentConfig
    from robofume.status import write_status

    def cfg(session: str) -> ExperimentConfig:
        base = ExperimentConfig()
        deploy = dataclasses.replace(base.deploy, run_dir=str(tmp_path), session=session)
        return base.replace(deploy=deploy)

    assert steps_before_restart(cfg("s1"), "actor_0") == 0  # first start: no heartbeat yet
    write_status(tmp_path, "actor_0", {"session": "s1", "env_steps": 57, "steps": 7})
    assert steps_before_restart(cfg("s1"), "actor_0") == 57
    assert steps_before_restart(cfg("s2"), "actor_0") == 0  # another `up`: a fresh axis
    assert steps_before_restart(cfg(""), "actor_0") == 0  # started by hand


# --- the reset-free loop, with a scripted environment and ground-truth labels ----------------


class ScriptedEnv:
    """A gym-like scene whose task succeeds at the steps the test names; records every call."""

    def __init__(self, succeed_at: dict[str, set[int]]):
        self.succeed_at = succeed_at
        self.task = SimpleNamespace(name="vase_forward", language="put the vase in the bin")
        self.calls: list[str] = []
        self.t = 0

    def _obs(self):
        return {"image": FRAME.copy(), "proprio": np.zeros(4, np.float32)}

    def reset(self, options=None):
        self.set_task(options["task"])
        self.calls.append(f"reset:{self.task.name}")
        return self._obs(), {}

    def set_task(self, name: str) -> None:
        self.task = SimpleNamespace(name=name, language=name.replace("_", " "))
        self.t = 0

    def step(self, action):
        self.t += 1
        success = self.t in self.succeed_at.get(self.task.name, set())
        return self._obs(), float(success), False, False, {"success": success}


class ListSink:
    """The delivery queue's side the loop sees: closed segments, in order."""

    def __init__(self):
        self.segments: list[Segment] = []
        self.replay_reachable = True

    def put(self, segment: Segment) -> None:
        self.segments.append(segment)


class NoCommands:
    def __init__(self, script: dict[int, str] | None = None):
        self.script = script or {}
        self.tick = 0

    def poll(self):
        self.tick += 1
        command = self.script.get(self.tick)
        return [(command, "test")] if command else []


def _loop(env, commands=None, human_reset_every=0, max_episode_steps=5, policy_version=3):
    import dataclasses

    from actor.loop import Actor, ResetFreeLoop
    from actor.scheduler import TickScheduler
    from robofume.config import ExperimentConfig

    base = ExperimentConfig()
    cfg = base.replace(
        actor=dataclasses.replace(base.actor, human_reset_every=human_reset_every),
        env=dataclasses.replace(base.env, max_episode_steps=max_episode_steps),
    )
    policy = FakePolicy(version=policy_version)
    actor = Actor(policy, None, ground_truth_reward=True)
    sink = ListSink()
    loop = ResetFreeLoop(cfg, env, actor, sink, commands or NoCommands(), TickScheduler(0))
    return loop, sink


def test_loop_alternates_forward_and_reset_on_success_and_step_limit():
    env = ScriptedEnv({"vase_forward": {3}, "vase_reset": set()})
    loop, sink = _loop(env)
    loop.run(max_steps=12)
    closed = [(s.task, len(s), s.close_reason) for s in sink.segments]
    assert closed[:3] == [
        ("vase_forward", 3, "success"),  # ends at its first success, the scene untouched
        ("vase_reset", 5, "step_limit"),  # the reset task never succeeds: 5-step limit
        ("vase_forward", 3, "success"),
    ]
    assert env.calls == ["reset:vase_forward"]  # one scene reset, at the start only
    assert loop.state == "stopped" and loop.steps == 12


def test_loop_resets_the_scene_for_a_human_reset_and_an_intervention():
    env = ScriptedEnv({})
    loop, sink = _loop(env, NoCommands({4: "intervene"}), human_reset_every=6, max_episode_steps=50)
    loop.run(max_steps=12)
    assert loop.interventions == 1 and loop.human_resets >= 1
    assert env.calls.count("reset:vase_forward") >= 3  # start, intervention, human reset
    assert [s.close_reason for s in sink.segments][:2] == ["intervention", "human_reset"]


def test_loop_holds_without_policy_weights():
    env = ScriptedEnv({})
    loop, sink = _loop(env, NoCommands({4: "stop"}), policy_version=-1)
    states = []
    loop.tick = _recording(loop.tick, lambda: states.append(loop.state))
    loop.run(max_steps=100)
    assert loop.steps == 0 and loop.held_ticks == 3 and sink.segments == []
    assert "waiting for the learner's first policy weights" in states[2]


def _recording(fn, after):
    def wrapped():
        fn()
        after()

    return wrapped
