"""Scripted rollouts in the simulator: demos, reset-free forward/reset pairs, failures.

Every function takes an environment from :func:`robofume.envs.make_env` and a seed and is
deterministic given them. A rollout records the observations before and after every action
and the ground-truth ``success`` of each step (``info["success"]`` of the current task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from robofume.types import Episode

FAILURE_MODES = ("aborted", "noisy", "dropped", "wrong_bin", "held", "near_place")
"""How failure rollouts go wrong: ``aborted``: the expert stopped between a quarter and three
quarters of the way to success; ``noisy``: an expert with large action noise
(``data.failure_noise``); ``dropped``: the gripper is forced open for good a few steps after
the expert closed it (the object falls and cannot be picked up again); ``wrong_bin``: the
expert puts the object in the bin that is neither the task's source nor its destination;
``held``: the expert carries the object to its place and lowers it, but never lets go (the
object hangs in the closed gripper just above its place, then at the approach height);
``near_place``: the expert puts the object on one of the two places nearest its destination
that are neither source nor destination (for the centre: the plate or the mat).
``data.failure_modes`` chooses which of them a dataset draws."""
RELEASE_PHASES = ("lower", "release", "retreat", "done")
"""Phases of the scripted expert from which on a ``held`` rollout keeps the gripper closed."""
HELD_STEPS = 6
"""Steps a ``held`` rollout hovers over the place, the object still held, before it stops."""
GRIPPER_OPEN = -1.0
"""Gripper action that opens the simulator's gripper (> 0 closes it)."""


@dataclass
class Rollout:
    """Observations and per-step records of one rollout in progress."""

    images: list[np.ndarray] = field(default_factory=list)
    proprio: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)

    def start(self, obs: dict[str, np.ndarray]) -> None:
        self.images.append(obs["image"])
        self.proprio.append(obs["proprio"])

    def add(self, action: np.ndarray, obs: dict[str, np.ndarray], success: bool) -> None:
        self.actions.append(np.asarray(action, np.float32))
        self.images.append(obs["image"])
        self.proprio.append(obs["proprio"])
        self.success.append(bool(success))

    def truncate(self, steps: int) -> Rollout:
        """The first ``steps`` steps (and ``steps + 1`` observations)."""
        return Rollout(
            self.images[: steps + 1],
            self.proprio[: steps + 1],
            self.actions[:steps],
            self.success[:steps],
        )

    def first_success(self) -> int | None:
        """Index of the first successful step, None if there is none."""
        return self.success.index(True) if True in self.success else None

    def streak(self) -> int:
        """Number of consecutive successful steps at the end."""
        n = 0
        for s in reversed(self.success):
            if not s:
                break
            n += 1
        return n

    def to_episode(self, task: Any, kind: str, meta: dict[str, Any]) -> Episode:
        """Episode with sparse rewards from ground truth and a terminal iff it ends on success."""
        success = np.asarray(self.success, bool)
        terminals = np.zeros_like(success)
        if success.size and success[-1]:
            terminals[-1] = True
        return Episode(
            images=np.stack(self.images).astype(np.uint8),
            proprio=np.stack(self.proprio).astype(np.float32),
            actions=np.stack(self.actions).astype(np.float32),
            rewards=success.astype(np.float32),
            terminals=terminals,
            success=success,
            task=task.name,
            language=task.language,
            kind=kind,  # type: ignore[arg-type]
            meta=dict(meta),
        )


def run_expert(
    env: Any,
    obs: dict[str, np.ndarray],
    expert: Any,
    max_steps: int,
    hold_steps: int,
    stop_after: int | None = None,
    open_after_closed: int | None = None,
    success_fn: Callable[[dict[str, Any]], bool] | None = None,
    stop_fn: Callable[[], bool] | None = None,
) -> tuple[Rollout, dict[str, np.ndarray]]:
    """Step the expert from ``obs`` until ``hold_steps + 1`` consecutive successful steps.

    Stops early at ``max_steps`` steps, or after ``stop_after`` steps. Once the expert has
    commanded "close" for ``open_after_closed`` consecutive steps, the gripper is forced open
    for the rest of the rollout. ``success_fn(info)`` replaces
    ``info["success"]`` (to record another task's ground truth); ``stop_fn()`` true after a
    step ends the rollout. Returns the rollout and the last observation.
    """
    rollout = Rollout()
    rollout.start(obs)
    limit = max_steps if stop_after is None else min(max_steps, stop_after)
    closed, forced = 0, False
    for _ in range(limit):
        action = np.asarray(expert.act(obs), np.float32)
        if open_after_closed is not None:
            closed = closed + 1 if action[-1] > 0 else 0
            forced = forced or closed >= open_after_closed
            if forced:
                action = action.copy()
                action[-1] = GRIPPER_OPEN
        obs, _reward, _term, _trunc, info = env.step(action)
        rollout.add(action, obs, success_fn(info) if success_fn else info["success"])
        if rollout.streak() > hold_steps or (stop_fn is not None and stop_fn()):
            break
    return rollout, obs


def is_demo(rollout: Rollout, hold_steps: int) -> bool:
    """A kept demo ends with ``hold_steps + 1`` successful steps (its last frames show success)."""
    return rollout.streak() > hold_steps


def is_failure(rollout: Rollout) -> bool:
    """A kept failure never shows success (so every frame is a 'no' for the classifier)."""
    return len(rollout.actions) > 0 and not any(rollout.success)


def demo(
    env: Any, task: Any, seed: int, noise: float, max_steps: int, hold_steps: int, expert_cls: Any
) -> tuple[Rollout, dict[str, np.ndarray]]:
    """One expert rollout of ``task`` from a fresh initial state."""
    obs, _info = env.reset(seed=seed, options={"task": task.name})
    expert = expert_cls(env, noise=noise, seed=seed)
    expert.reset()
    return run_expert(env, obs, expert, max_steps, hold_steps)


def reset_free_pair(
    env: Any,
    forward: Any,
    reset: Any,
    seed: int,
    noise: float,
    max_steps: int,
    hold_steps: int,
    expert_cls: Any,
    want_reset: bool,
) -> tuple[Rollout, Rollout | None]:
    """A forward demo, then (without resetting the scene) a reset demo from where it ended."""
    fwd, obs = demo(env, forward, seed, noise, max_steps, hold_steps, expert_cls)
    if not want_reset or not is_demo(fwd, hold_steps):
        return fwd, None
    env.set_task(reset.name)
    expert = expert_cls(env, noise=noise, seed=seed + 1)
    expert.reset()
    rst, _obs = run_expert(env, obs, expert, max_steps, hold_steps)
    return fwd, rst


def failure(
    env: Any,
    task: Any,
    seed: int,
    mode: str,
    noise: float,
    failure_noise: float,
    max_steps: int,
    expert_cls: Any,
) -> tuple[Rollout, dict[str, Any]]:
    """One perturbed or aborted rollout of ``task``; returns it with a description.

    Failure rollouts last at most ``max_steps // 2`` steps (``held``: ``max_steps``, as it
    must reach the place) and stop at the first success of ``task`` (``hold_steps=0``; such a
    rollout is then rejected by :func:`is_failure`).
    """
    rng = np.random.default_rng(seed)
    max_steps = max_steps if mode == "held" else max(2, max_steps // 2)
    obs, _info = env.reset(seed=seed, options={"task": task.name})
    info: dict[str, Any] = {"failure_mode": mode}
    if mode == "noisy":
        expert = expert_cls(env, noise=failure_noise, seed=seed)
        expert.reset()
        rollout, _ = run_expert(env, obs, expert, max_steps, hold_steps=0)
        info["noise"] = failure_noise
        return rollout, info
    expert = expert_cls(env, noise=noise, seed=seed)
    expert.reset()
    if mode == "aborted":
        # the expert's own way to its first success, cut between 1/4 and 3/4 of it
        rollout, _ = run_expert(env, obs, expert, max_steps, 0)
        first = rollout.first_success()
        length = len(rollout.actions) if first is None else first
        stop = int(rng.integers(max(1, length // 4), max(1, (3 * length) // 4) + 1))
        info["stopped_at"] = stop
        return rollout.truncate(min(stop, length)), info
    if mode == "dropped":
        delay = int(rng.integers(2, 6))
        rollout, _ = run_expert(env, obs, expert, max_steps, 0, open_after_closed=delay)
        info["opened_after_closed_steps"] = delay
        return rollout, info
    if mode in ("wrong_bin", "near_place"):
        wrong = wrong_bin_task(task) if mode == "wrong_bin" else near_place_task(task, rng)
        env.set_task(wrong)  # the expert now works on the wrong task, in the same scene
        placed = [0]  # steps the object has rested in the wrong place

        def settled() -> bool:
            placed[0] = placed[0] + 1 if env.unwrapped.is_success(wrong) else 0
            return placed[0] >= 3

        try:
            expert.reset()
            rollout, _ = run_expert(
                env,
                obs,
                expert,
                max_steps,
                0,
                success_fn=lambda _info: env.unwrapped.is_success(task),
                stop_fn=settled,
            )
        finally:
            env.set_task(task.name)
        info["put_in"] = wrong.destination
        return rollout, info
    if mode == "held":
        never_lets_go = NeverLetsGo(expert)
        hovering = [0]  # steps the expert has waited over the place with the object held

        def hovered() -> bool:
            hovering[0] = hovering[0] + 1 if expert.phase == "done" else 0
            return hovering[0] >= HELD_STEPS

        rollout, _ = run_expert(env, obs, never_lets_go, max_steps, 0, stop_fn=hovered)
        info["held_over"] = task.destination
        return rollout, info
    raise ValueError(f"unknown failure mode {mode!r}; known: {FAILURE_MODES}")


class NeverLetsGo:
    """The expert's actions, with the gripper kept closed once it starts lowering to the place."""

    def __init__(self, expert: Any):
        self.expert = expert
        self.latched = False

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action = np.asarray(self.expert.act(obs), np.float32).copy()
        self.latched = self.latched or self.expert.phase in RELEASE_PHASES
        if self.latched:
            action[-1] = -GRIPPER_OPEN
        return action


def wrong_bin_task(task: Any) -> Any:
    """``task`` with its destination replaced by the bin that is neither source nor destination."""
    bins = [b for b in ("left_bin", "right_bin") if b not in (task.source, task.destination)]
    dest = bins[0] if bins else ("centre" if task.destination != "centre" else "plate")
    return misplaced(task, dest)


def near_place_task(task: Any, rng: np.random.Generator) -> Any:
    """``task`` with its destination replaced by one of the two other places nearest to it."""
    from robofume.envs.layout import PLACES

    here = np.asarray(PLACES[task.destination].center)
    others = sorted(
        (p for p in PLACES.values() if p.name not in (task.source, task.destination)),
        key=lambda p: float(np.linalg.norm(np.asarray(p.center) - here)),
    )
    return misplaced(task, others[int(rng.integers(0, 2))].name)


def misplaced(task: Any, dest: str) -> Any:
    """``task`` with another destination (and no reset pair)."""
    return replace(task, name=f"{task.name}__to_{dest}", destination=dest, pair=None)
