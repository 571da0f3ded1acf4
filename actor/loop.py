"""The reset-free actor: an Acme-style :class:`Actor` and the :class:`ResetFreeLoop` driving it.

One control tick (``cfg.env.control_hz``, 5 Hz on the robot), on a monotonic deadline grid:

1. take the labels that returned since the last tick and file them under their own steps;
2. handle commands (intervention: close the episode, reset the scene, forward task);
3. a (simulated) human resets the scene every ``human_reset_every`` steps;
4. switch the instruction when a returned label says success or at the step limit;
5. run the policy on the newest weights, step the environment, record the transition, and
   send the new frame to the reward server without waiting for the answer.

Everything that talks to a server (labels, replay writes, weight pulls, reports) runs on
background threads; see ``actor/episodes.py`` for how late labels are handled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import numpy as np

from actor.delivery import DeliveryQueue
from actor.episodes import Segment
from actor.labels import LabelTracker
from actor.pace import LearnerPace
from actor.scheduler import TickScheduler
from robofume.config import ExperimentConfig
from robofume.envs.errors import InvalidActionError, RobotFaultError
from robofume.weights_puller import ActingPolicy, WeightsPuller

log = logging.getLogger(__name__)


class Actor:
    """Acme-style actor: ``select_action``, ``observe_first``, ``observe``, ``update``."""

    def __init__(
        self,
        policy: ActingPolicy,
        tracker: LabelTracker | None,
        puller: WeightsPuller | None = None,
        *,
        ground_truth_reward: bool = False,
        meta: dict[str, Any] | None = None,
        success_frames: int = 1,
    ):
        self.policy = policy
        self.tracker = tracker
        self.puller = puller
        self.ground_truth_reward = ground_truth_reward
        self.success_frames = success_frames
        self.meta = dict(meta or {})
        self.segment: Segment | None = None
        self.next_step_id = 0
        self.next_seq = 0
        self._index: dict[int, int] = {}

    def select_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        assert self.segment is not None, "observe_first before select_action"
        return self.policy.act(observation, self.segment.task)

    def observe_first(self, observation: dict[str, np.ndarray], task: str, language: str) -> None:
        """Start a segment under ``task`` from ``observation``."""
        self.segment = Segment(
            seq=self.next_seq,
            task=task,
            language=language,
            images=[np.asarray(observation["image"], np.uint8)],
            proprio=[np.asarray(observation["proprio"], np.float32)],
            meta={**self.meta, "policy_version": int(self.policy.version)},
            success_frames=1 if self.ground_truth_reward else self.success_frames,
        )
        self.next_seq += 1
        self._index = {}

    def observe(
        self, action: np.ndarray, next_observation: dict[str, np.ndarray], info: dict[str, Any]
    ) -> int:
        """Record (obs t, action t) -> obs t+1 and ask for its label; returns the step id."""
        seg = self.segment
        assert seg is not None, "observe_first before observe"
        step_id = self.next_step_id
        self.next_step_id += 1
        gt = bool(info.get("success", False))
        index = seg.add(action, next_observation["image"], next_observation["proprio"], step_id, gt)
        self._index[step_id] = index
        if "success" in info:
            seg.meta["ground_truth"] = True
        if self.ground_truth_reward:
            seg.set_label(index, float(gt), gt)
        elif self.tracker is not None:
            self.tracker.submit(step_id, next_observation["image"], seg.task)
        return step_id

    def update(self, wait: bool = False) -> None:
        """Ask for the newest weights; with ``wait``, block until they were checked."""
        if self.puller is not None:
            self.puller.check_now(wait=wait)

    def apply_labels(self) -> None:
        """File the labels that returned since the last tick under their own transitions."""
        if self.tracker is None:
            return
        for label in self.tracker.drain():
            index = self._index.get(label.step_id)
            if index is not None and self.segment is not None:
                self.segment.set_label(index, label.prob, label.decision)

    def close(self, reason: str) -> Segment | None:
        """End the open segment; returns it (None when there was none)."""
        seg, self.segment = self.segment, None
        if seg is not None:
            seg.close_reason = reason
            seg.closed_at = time.monotonic()
            seg.meta["policy_version_end"] = int(self.policy.version)
        return seg


class ResetFreeLoop:
    """Drives env + actor on the control tick; owns instruction switching and interventions."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        env: Any,
        actor: Actor,
        delivery: DeliveryQueue,
        commands: Any,
        scheduler: TickScheduler,
        pace: LearnerPace | None = None,
    ):
        self.cfg = cfg
        self.pace = pace
        self.env = env
        self.actor = actor
        self.delivery = delivery
        self.commands = commands
        self.scheduler = scheduler
        self.forward = cfg.actor.forward_task
        self.reset_task = cfg.actor.reset_task
        self.max_episode_steps = cfg.env.max_episode_steps
        self.obs: dict[str, np.ndarray] | None = None
        self.steps = 0
        self.steps_since_reset = 0
        self.interventions = 0
        self.intervention_sources: Counter[str] = Counter()
        self.human_resets = 0
        self.segments: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.invalid_actions = 0
        self.held_ticks = 0
        self.paced_ticks = 0
        self.state = "starting"
        self.fault = ""
        self._last_fault_try = 0.0
        self._stopping = False
        self._started = time.monotonic()

    # --- public ---------------------------------------------------------------------------
    def run(self, max_steps: int | None = None, stop_event: threading.Event | None = None) -> None:
        stop_event = stop_event or threading.Event()
        self._reset(self.forward, "start")
        self.state = "running"
        try:
            while not (self._stopping or stop_event.is_set()):
                if max_steps and self.steps >= max_steps:
                    break
                self.scheduler.wait()
                if stop_event.is_set():
                    break
                self.tick()
        finally:
            self.actor.apply_labels()
            self._close("stop")
            self.state = "stopped"

    def tick(self) -> None:
        """One control tick (public for tests)."""
        self.actor.apply_labels()
        for command, source in self.commands.poll():
            if command == "stop":
                self._stopping = True
                return
            self._intervene(source)
            return
        if self.fault:
            self._retry_fault()
            return
        every = self.cfg.actor.human_reset_every
        if every and self.steps_since_reset >= every:
            self.human_resets += 1
            log.info("human reset %d after %d steps", self.human_resets, self.steps_since_reset)
            self._reset(self.forward, "human_reset")
            return
        seg = self.actor.segment
        assert seg is not None
        if seg.first_success() is not None:
            self._switch("success")
        elif len(seg) >= self.max_episode_steps:
            self._switch("step_limit")
        if self._hold():
            return
        self.state = "running"
        action = self.actor.select_action(self.obs)
        try:
            obs, _, _, _, info = self.env.step(action)
        except InvalidActionError as err:
            self.invalid_actions += 1
            log.error(
                "policy v%d produced an invalid action, skipped: %s", self.actor.policy.version, err
            )
            return
        if info.get("safe_stop"):
            self._interrupt("safe_stop", str(info["safe_stop"]))
            return
        self.actor.observe(action, obs, info)
        self.obs = obs
        self.steps += 1
        self.steps_since_reset += 1

    # --- helpers --------------------------------------------------------------------------
    def _hold(self) -> bool:
        """True when this tick must not act (no weights yet, or a server is down in hold mode)."""
        reason = ""
        if self.actor.policy.version < 0:
            reason = "waiting for the learner's first policy weights"
        elif self.cfg.actor.hold_when_unreachable:
            tracker = self.actor.tracker
            if not self.delivery.replay_reachable:
                reason = "replay unreachable"
            elif tracker is not None and not tracker.reachable:
                reason = "reward server unreachable"
                tracker.probe(self.obs["image"], self.actor.segment.task)
        if not reason and self.pace is not None and self.pace.hold():
            # simulation: the learner is behind the UTD target; wait for it (not a fault)
            self.state = "waiting for the learner (UTD)"
            self.paced_ticks += 1
            self.pace.wait(min(0.5, self.scheduler.period or 0.5))
            return True
        if reason:
            if self.state != f"holding: {reason}":
                log.warning("holding (no actions): %s", reason)
            self.state = f"holding: {reason}"
            self.held_ticks += 1
            return True
        return False

    def _close(self, reason: str) -> None:
        seg = self.actor.close(reason)
        if seg is not None and len(seg):
            self.closed[seg.task] += 1
            self.delivery.put(seg)

    def _start(self, task: str) -> None:
        self.actor.observe_first(self.obs, task, self.env.task.language)
        self.segments[task] += 1

    def _switch(self, reason: str) -> None:
        """End the episode and give the other instruction, without touching the scene."""
        seg = self.actor.segment
        nxt = self.reset_task if seg.task == self.forward else self.forward
        log.debug("%s ended (%s) after %d steps; next: %s", seg.task, reason, len(seg), nxt)
        self._close(reason)
        self.env.set_task(nxt)
        self._start(nxt)

    def _reset(self, task: str, reason: str) -> None:
        """Close the episode, reset the scene for ``task`` and start it."""
        self._close(reason)
        try:
            self.obs, _ = self.env.reset(options={"task": task})
        except RobotFaultError as err:
            self.fault = str(err)
            self.state = "faulted"
            self._last_fault_try = time.monotonic()
            log.error("robot fault: %s; holding until a human clears it (intervene to retry)", err)
            return
        self.fault = ""
        self.steps_since_reset = 0
        self._start(task)

    def _intervene(self, source: str) -> None:
        if self.fault:
            log.info("intervention (%s): retrying the reset after the fault", source)
            self._reset(self.forward, "intervention")
            return
        self._interrupt(source, "human intervention")

    def _interrupt(self, source: str, why: str) -> None:
        self.interventions += 1
        self.intervention_sources[source] += 1
        seg = self.actor.segment
        log.warning(
            "intervention %d (%s: %s): stopping %s at step %d, resetting, restarting %s",
            self.interventions,
            source,
            why,
            seg.task if seg else "-",
            len(seg) if seg else 0,
            self.forward,
        )
        self._reset(self.forward, "intervention" if source != "safe_stop" else "safe_stop")

    def _retry_fault(self) -> None:
        if time.monotonic() - self._last_fault_try >= max(5.0, self.cfg.actor.retry_s):
            self._reset(self.forward, "fault")

    def snapshot(self) -> dict[str, Any]:
        """Counters for status and TensorBoard (read from another thread)."""
        seg = self.actor.segment
        return {
            "state": self.state,
            "fault": self.fault,
            "steps": self.steps,
            "task": seg.task if seg else None,
            "episode_steps": len(seg) if seg else 0,
            "episodes_started": dict(self.segments),
            "episodes_closed": dict(self.closed),
            "interventions": self.interventions,
            "intervention_sources": dict(self.intervention_sources),
            "human_resets": self.human_resets,
            "invalid_actions": self.invalid_actions,
            "held_ticks": self.held_ticks,
            "paced_ticks": self.paced_ticks,
            "paced_s": self.pace.waited_s if self.pace is not None else 0.0,
            "uptime_s": time.monotonic() - self._started,
        }
