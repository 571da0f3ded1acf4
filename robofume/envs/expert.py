"""A scripted pick-and-place expert for every task of the tabletop.

Waypoints: above the object -> descend -> close -> lift -> above the destination -> lower ->
open -> retreat. It is closed-loop: every call re-plans from the simulator's current state
(object and gripper positions, finger contacts), so a grasp that slips, a drop on the way or an
object that bounces out of its destination sends it back to the approach phase instead of
carrying on blindly. Gaussian noise with std ``noise`` is added to every action component and
the result clipped to [-1, 1].
"""

from __future__ import annotations

import numpy as np

from robofume.envs.layout import OBJECTS, PLACES
from robofume.tasks import Task

HOVER_Z = 0.13
"""Approach height of the end effector above the table (m): clears every object."""
CARRY_Z = 0.15
"""Height at which objects are carried: clears the bin rims."""
RELEASE_GAP = 0.012
"""Objects are let go with their bottom this far (m) above the destination surface."""
XY_TOL = 0.008
Z_TOL = 0.008


class ScriptedExpert:
    """Waypoint expert: ``expert.reset()`` at the start of an episode, then ``act(obs)``.

    ``env`` is the ``TabletopEnv`` (or a wrapper around it); the expert reads ground-truth state
    from it and acts on the env's current task. ``phase`` names the current waypoint.
    """

    def __init__(self, env, noise: float = 0.0, seed: int | None = 0):
        if noise < 0:
            raise ValueError(f"expert noise must be >= 0, got {noise}")
        self.env = env.unwrapped
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.phase = "approach"
        self._wait = 0

    def reset(self) -> None:
        """Start a new episode (the noise stream continues)."""
        self.phase = "approach"
        self._wait = 0

    def __call__(self, obs: dict, task: str | None = None) -> np.ndarray:
        return self.act(obs)

    def act(self, obs: dict | None = None) -> np.ndarray:
        """The next action (float32, action_dim) for the env's current task."""
        env = self.env
        task: Task = env.task
        ee = env.ee_position()
        close, target = self._plan(task, ee)
        step = env.cfg.max_ee_step
        action = np.zeros(env.cfg.action_dim, dtype=np.float64)
        action[:3] = np.clip((target - ee) / step, -1.0, 1.0)
        action[-1] = 1.0 if close else -1.0
        if self.noise > 0:
            action += self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ planning
    def _held(self, task: Task, ee: np.ndarray) -> bool:
        env = self.env
        grasp = env.grasp_point(task.obj)
        return (
            env.touching_fingers(task.obj) >= 1
            and env.gripper_opening() > 0.05
            and float(np.linalg.norm(grasp - ee)) < 0.03
        )

    def _plan(self, task: Task, ee: np.ndarray) -> tuple[bool, np.ndarray]:
        """(close gripper?, end-effector target) for the current phase; advances phases."""
        env = self.env
        if not env.in_scene(task.obj):
            return False, ee.copy()
        spec = OBJECTS[task.obj]
        obj = env.object_position(task.obj)
        grasp = env.grasp_point(task.obj)
        dest = PLACES[task.destination]
        place = np.array([*dest.center, dest.floor + spec.grasp_z + RELEASE_GAP])
        xy_err = float(np.linalg.norm(grasp[:2] - ee[:2]))
        for _ in range(8):  # phase transitions within one call (bounded)
            p = self.phase
            if p == "approach":
                if env.gripper_opening() < 0.9 and ee[2] < HOVER_Z - 0.02 and xy_err > 0.02:
                    # opened or still opening near objects: rise first
                    return False, np.array([ee[0], ee[1], HOVER_Z])
                if xy_err < XY_TOL * 1.5:
                    self.phase = "descend"
                    continue
                return False, np.array([grasp[0], grasp[1], max(HOVER_Z, ee[2])])
            if p == "descend":
                if xy_err > 0.025:
                    self.phase = "approach"
                    continue
                if abs(ee[2] - grasp[2]) < Z_TOL and xy_err < XY_TOL * 1.5:
                    self.phase, self._wait = "close", 0
                    continue
                return False, grasp
            if p == "close":
                self._wait += 1
                if self._wait > 1:
                    if env.touching_fingers(task.obj) == 2:
                        self.phase = "lift"
                        continue
                    if self._wait > 3:
                        self.phase = "approach"
                        return False, np.array([ee[0], ee[1], HOVER_Z])
                return True, grasp
            if p == "lift":
                if not self._held(task, ee):
                    self.phase = "approach"
                    return False, np.array([ee[0], ee[1], HOVER_Z])
                if ee[2] > CARRY_Z - 0.015:
                    self.phase = "carry"
                    continue
                return True, np.array([ee[0], ee[1], CARRY_Z])
            if p == "carry":
                if not self._held(task, ee):
                    self.phase = "approach"
                    continue
                if float(np.linalg.norm(place[:2] - ee[:2])) < XY_TOL:
                    self.phase = "lower"
                    continue
                return True, np.array([place[0], place[1], CARRY_Z])
            if p == "lower":
                if not self._held(task, ee):
                    self.phase = "release"
                    continue
                if abs(ee[2] - place[2]) < Z_TOL:
                    self.phase, self._wait = "release", 0
                    continue
                return True, place
            if p == "release":
                self._wait += 1
                if self._wait > 1 and env.touching_fingers(task.obj) == 0:
                    self.phase = "retreat"
                    continue
                if self._wait > 4:
                    self.phase = "retreat"
                    continue
                return False, ee.copy()
            if p == "retreat":
                if ee[2] > HOVER_Z - 0.01:
                    self.phase, self._wait = "done", 0
                    continue
                return False, np.array([ee[0], ee[1], HOVER_Z])
            if p == "done":
                if dest.contains(obj[0], obj[1]):
                    return False, np.array([ee[0], ee[1], HOVER_Z])
                self._wait += 1
                if self._wait > 3:  # missed the destination: pick it up again
                    self.phase = "approach"
                    continue
                return False, np.array([ee[0], ee[1], HOVER_Z])
        return False, ee.copy()
