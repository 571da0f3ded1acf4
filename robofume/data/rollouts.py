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

FAILURE_MODES = ("aborted", "noisy", "dropped", "wrong_bin")
"""How failure rollouts go wrong: the expert stopped part way; an expert with large action
noise; an expert whose gripper is forced open from some step on (the object is dropped or
never grasped); an expert that puts the object in the bin that is neither the task's source
nor its destination."""
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
    force_open_from: int | None = None,
    success_fn: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[Rollout, dict[str, np.ndarray]]:
    """Step the expert from ``obs`` until ``hold_steps + 1`` consecutive successful steps.

    Stops early at ``max_steps`` steps, or after ``stop_after`` steps (aborted rollouts). From
    step ``force_open_from`` on, the gripper is forced open. ``success_fn(info)`` replaces
    ``info["success"]`` (to record another task's ground truth). Returns the rollout and the
    last observation.
    """
    rollout = Rollout()
    rollout.start(obs)
    limit = max_steps if stop_after is None else min(max_steps, stop_after)
    for t in range(limit):
        action = np.asarray(expert.act(obs), np.float32)
        if force_open_from is not None and t >= force_open_from:
            action = action.copy()
            action[-1] = GRIPPER_OPEN
        obs, _reward, _term, _trunc, info = env.step(action)
        rollout.add(action, obs, success_fn(info) if success_fn else info["success"])
        if rollout.streak() > hold_steps:
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

    Every mode stops at the first success (``hold_steps=0``): such a rollout is rejected.
    """
    rng = np.random.default_rng(seed)
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
        stop = int(rng.integers(max(2, max_steps // 10), max(3, max_steps // 2)))
        rollout, _ = run_expert(env, obs, expert, max_steps, 0, stop_after=stop)
        info["stopped_at"] = stop
        return rollout, info
    if mode == "dropped":
        start = int(rng.integers(max(1, max_steps // 8), max(2, max_steps // 3)))
        rollout, _ = run_expert(env, obs, expert, max_steps, 0, force_open_from=start)
        info["opened_at"] = start
        return rollout, info
    if mode == "wrong_bin":
        wrong = wrong_bin_task(task)
        env.set_task(wrong)  # the expert now works on the wrong task, in the same scene
        try:
            expert.reset()
            rollout, _ = run_expert(
                env,
                obs,
                expert,
                max_steps,
                0,
                success_fn=lambda _info: env.unwrapped.is_success(task),
            )
        finally:
            env.set_task(task.name)
        info["put_in"] = wrong.destination
        return rollout, info
    raise ValueError(f"unknown failure mode {mode!r}; known: {FAILURE_MODES}")


def wrong_bin_task(task: Any) -> Any:
    """``task`` with its destination replaced by the bin that is neither source nor destination."""
    bins = [b for b in ("left_bin", "right_bin") if b not in (task.source, task.destination)]
    dest = bins[0] if bins else ("centre" if task.destination != "centre" else "plate")
    return replace(task, name=f"{task.name}__to_{dest}", destination=dest, pair=None)
