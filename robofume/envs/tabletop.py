"""``TabletopEnv``: the simulated WidowX-like tabletop as a Gymnasium environment.

Observation: ``{"image": uint8 (S, S, 3), "proprio": float32 (4,)}`` with S = ``image_size``;
proprio = end-effector position (x, y, z in metres, world frame) and gripper opening in [0, 1]
(0 closed, 1 fully open). With ``env.observation: state`` proprio has 7 entries: the task
object's position (x, y, z in metres) follows (privileged state, for checking learners).

Action (float, ``action_dim`` = 4): ``(dx, dy, dz, gripper)`` in [-1, 1], one per 0.2 s (5 Hz).
The end-effector target moves by ``action[:3] * max_ee_step`` metres (clipped to the workspace
bounds); ``gripper > 0`` closes the gripper, ``<= 0`` opens it (binary, like the real WidowX
driver). With ``action_dim`` = 5 the action is ``(dx, dy, dz, dyaw, gripper)``: dyaw turns the
gripper about the vertical by ``dyaw * max_yaw_step`` radians. Values outside [-1, 1] are
clipped; NaN/inf, a wrong shape or a non-numeric dtype raise ``InvalidActionError`` before
anything is applied.

Success (ground truth, ``info["success"]``, reward = 1.0 when true): the task's object has its
origin (centre of its footprint) inside the destination region, at most 3 cm above that
region's surface (so it rests there rather than hangs above it), moves slower than 5 cm/s, and
touches neither finger (released). An object that is not in the scene never succeeds.

Reset-free: ``set_task`` changes only the instruction; ``reset`` draws a fresh initial state
for the (given or current) task: its object at the task's source place with position jitter,
the gripper open at a jittered start pose, optional scene variation (lighting, camera, object
colour, distractors). Objects not in the scene wait inside the table with physics switched off.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from robofume.envs import scene
from robofume.envs.errors import InvalidActionError
from robofume.envs.layout import DISTRACTOR_SPOTS, OBJECTS, PLACES
from robofume.envs.mujoco_gl import import_mujoco, keep_until_exit
from robofume.tasks import Task, get_task

if TYPE_CHECKING:
    from robofume.config.env import EnvConfig

log = logging.getLogger(__name__)

PROPRIO_DIM = 4
"""ee x, y, z (m) and gripper opening in [0, 1]."""
STATE_DIM = PROPRIO_DIM + 3
"""``env.observation: state``: proprio then the task object's position x, y, z (m)."""
REST_SPEED = 0.05
"""An object slower than this (m/s) is at rest."""
REST_HEIGHT = 0.03
"""An object's origin at most this far above its destination's surface counts as put there."""
EE_START = np.array([0.25, 0.0, 0.16])
"""Mean end-effector start position; jittered by ``EE_START_JITTER`` per axis."""
EE_START_JITTER = np.array([0.03, 0.06, 0.03])
OBJECT_YAW_JITTER = 0.15
"""Objects start rotated about the vertical by up to this many radians."""
SETTLE_STEPS = 60
"""Physics steps after a reset so objects rest before the first observation."""
CHUNKS = 10
"""The end-effector target is moved in this many increments per control step."""


class TabletopEnv(gym.Env):
    """The robofume MuJoCo tabletop (see the module docstring for the full contract)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(self, cfg: EnvConfig, task: str | Task = "vase_forward", seed: int | None = None):
        if cfg.action_dim not in (4, 5):
            raise ValueError(f"env.action_dim must be 4 or 5, got {cfg.action_dim}")
        if cfg.image_size < 8:
            raise ValueError(f"env.image_size must be >= 8 pixels, got {cfg.image_size}")
        self.cfg = cfg
        self.render_mode = "rgb_array"
        self._mj = import_mujoco(cfg.render_backend)
        self._renderer = None
        # anti-aliasing by 2x supersampling: on the CPU rasteriser this is ~4x cheaper than
        # MuJoCo's default multisampling at robofume's image sizes
        self._ss = 2 if cfg.image_size <= 160 else 1
        self.model = self._mj.MjModel.from_xml_string(scene.build_xml(cfg.image_size * self._ss))
        self.data = self._mj.MjData(self.model)
        self._task = get_task(task)
        self._pending_seed = seed
        size = int(cfg.image_size)
        self._proprio_dim = STATE_DIM if cfg.observation == "state" else PROPRIO_DIM
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
                "proprio": gym.spaces.Box(  # metres: beyond the arm's reach
                    np.array([-1, -1, -1, 0] + [-1] * (self._proprio_dim - 4), np.float32),
                    np.array([1, 1, 1, 1] + [1] * (self._proprio_dim - 4), np.float32),
                    dtype=np.float32,
                ),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (cfg.action_dim,), np.float32)
        self._n_sub = max(CHUNKS, round(1.0 / cfg.control_hz / self.model.opt.timestep))
        self._lo = np.asarray(cfg.workspace_low, dtype=np.float64)
        self._hi = np.asarray(cfg.workspace_high, dtype=np.float64)
        self._index_model()
        self._renderer = self._mj.Renderer(self.model, size * self._ss, size * self._ss)
        keep_until_exit(self)
        self._image: np.ndarray | None = None
        self._yaw = 0.0
        self._active: set[str] = set()
        self._unstable_seen = 0
        self.recoveries = 0
        """How often the scene was re-drawn after the physics became unstable."""

    # ------------------------------------------------------------------ model bookkeeping
    def _index_model(self) -> None:
        m = self.model
        qadr = lambda name: int(m.jnt_qposadr[m.joint(name).id])  # noqa: E731
        vadr = lambda name: int(m.jnt_dofadr[m.joint(name).id])  # noqa: E731
        self._obj_body = {n: m.body(f"obj_{n}").id for n in OBJECTS}
        self._obj_qadr = {n: qadr(f"obj_{n}") for n in OBJECTS}
        self._obj_vadr = {n: vadr(f"obj_{n}") for n in OBJECTS}
        self._obj_geoms = {
            n: np.flatnonzero(m.geom_bodyid == b).astype(np.int64)
            for n, b in self._obj_body.items()
        }
        self._hand_q, self._hand_v = qadr("hand"), vadr("hand")
        self._finger_q = [qadr("finger_l"), qadr("finger_r")]
        self._arm_q = [qadr(j) for j in ("waist", "shoulder", "elbow", "wrist")]
        self._ee_site = m.site("ee").id
        self._pads = np.array([m.geom("pad_l").id, m.geom("pad_r").id])
        self._cam = m.camera("main").id
        self._variation = scene.SceneVariator(m)
        self._hand_body = m.body("hand").id
        self._arm_v = [vadr(j) for j in ("waist", "shoulder", "elbow", "wrist")]

    # ------------------------------------------------------------------ public state
    @property
    def task(self) -> Task:
        """The current task (instruction)."""
        return self._task

    def set_task(self, task: str | Task) -> None:
        """Switch the instruction without touching the scene (reset-free)."""
        self._task = get_task(task)

    def ee_position(self) -> np.ndarray:
        """End-effector (pad centre) position in metres, world frame."""
        return self.data.site_xpos[self._ee_site].copy()

    def gripper_opening(self) -> float:
        """0 = closed, 1 = fully open."""
        q = self.data.qpos[self._finger_q]
        return float(np.clip(q.sum() / (2 * scene.FINGER_MAX), 0.0, 1.0))

    def object_position(self, name: str) -> np.ndarray:
        """World position of an object's origin (centre of its footprint)."""
        return self.data.xpos[self._obj_body[name]].copy()

    def grasp_point(self, name: str) -> np.ndarray:
        """Where the gripper should close on an object: its grasp point, rotated with the
        object, and never below the lowest end-effector height."""
        body = self._obj_body[name]
        point = self.data.xpos[body] + self.data.xmat[body].reshape(3, 3)[:, 2] * (
            OBJECTS[name].grasp_z
        )
        point[2] = max(point[2], self._lo[2])
        return point

    def object_speed(self, name: str) -> float:
        """Linear speed of an object (m/s)."""
        v = self._obj_vadr[name]
        return float(np.linalg.norm(self.data.qvel[v : v + 3]))

    def in_scene(self, name: str) -> bool:
        """Whether the object is on the table (not parked)."""
        return name in self._active

    def touching_fingers(self, name: str) -> int:
        """How many finger pads touch the object (0, 1 or 2)."""
        n = self.data.ncon
        if n == 0:
            return 0
        g1, g2 = self.data.contact.geom1[:n], self.data.contact.geom2[:n]
        geoms = self._obj_geoms[name]
        touching = 0
        for pad in self._pads:
            hit = ((g1 == pad) & np.isin(g2, geoms)) | ((g2 == pad) & np.isin(g1, geoms))
            touching += bool(hit.any())
        return touching

    def qpos(self) -> np.ndarray:
        """A copy of the full simulator position vector (for tests and tools)."""
        return self.data.qpos.copy()

    def is_success(self, task: str | Task | None = None) -> bool:
        """Ground-truth success of ``task`` (default: the current task) in the current state."""
        t = self._task if task is None else get_task(task)
        if t.obj not in self._active:
            return False
        place = PLACES[t.destination]
        x, y, z = self.object_position(t.obj)
        return bool(
            place.contains(x, y)
            and z <= place.floor + REST_HEIGHT
            and self.object_speed(t.obj) < REST_SPEED
            and self.touching_fingers(t.obj) == 0
        )

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        options = options or {}
        if options.get("task") is not None:
            self._task = get_task(options["task"])
        self._init_state(self.np_random)
        return self._obs(), self._info()

    def _init_state(self, rng: np.random.Generator) -> None:
        """Draw an initial state of the current task (scene variation, objects, arm)."""
        m, d, mj = self.model, self.data, self._mj
        mj.mj_resetData(m, d)
        self._variation.apply(self.cfg.scene, rng)
        # objects: the task's object at its source place, distractors on free spots
        others = [n for n in OBJECTS if n != self._task.obj]
        n_dis = min(int(self.cfg.scene.distractors), len(DISTRACTOR_SPOTS))
        chosen = list(rng.choice(others, size=n_dis, replace=False)) if n_dis else []
        spots = rng.permutation(len(DISTRACTOR_SPOTS))[:n_dis]
        self._active = {self._task.obj, *chosen}
        for i, name in enumerate(OBJECTS):
            self._set_physics(name, name in self._active)
            if name not in self._active:
                self._place(name, (0.25, -0.3 + 0.06 * i), scene.PARK_Z, 0.0)
        src = PLACES[self._task.source]
        jitter = rng.uniform(-src.start_jitter, src.start_jitter, size=2)
        cx, cy = src.center
        shift = self.cfg.shift
        if shift.active and not src.is_bin:
            cx, cy = cx + shift.start_offset[0], cy + shift.start_offset[1]
            jitter = jitter + rng.uniform(-shift.start_jitter, shift.start_jitter, size=2)
        self._place(
            self._task.obj,
            (cx + jitter[0], cy + jitter[1]),
            src.floor + 0.001,
            rng.uniform(-OBJECT_YAW_JITTER, OBJECT_YAW_JITTER),
        )
        for name, k in zip(chosen, spots, strict=True):
            x, y = DISTRACTOR_SPOTS[k]
            self._place(name, (x, y), 0.001, rng.uniform(-math.pi, math.pi))
        # arm: open gripper at a jittered start pose
        ee = np.clip(EE_START + rng.uniform(-1, 1, size=3) * EE_START_JITTER, self._lo, self._hi)
        self._yaw = 0.0
        d.qpos[self._hand_q : self._hand_q + 3] = ee
        d.qpos[self._hand_q + 3 : self._hand_q + 7] = (1.0, 0.0, 0.0, 0.0)
        d.mocap_pos[0] = ee
        d.mocap_quat[0] = (1.0, 0.0, 0.0, 0.0)
        d.qpos[self._finger_q] = scene.FINGER_MAX
        d.ctrl[:] = scene.FINGER_MAX
        mj.mj_step(m, d, nstep=SETTLE_STEPS)
        d.qvel[self._hand_v : self._hand_v + 6] = 0.0
        self._unstable_seen = self._instabilities()
        self._finish_step()

    def step(self, action):
        a = self._check_action(action)
        m, d, mj = self.model, self.data, self._mj
        delta = np.clip(a[:3], -1.0, 1.0) * self.cfg.max_ee_step * self.cfg.shift.action_gain
        start = d.mocap_pos[0].copy()
        ee = self.ee_position()
        target = np.clip(start + delta, self._lo, self._hi)
        # anti-windup: never lead the real hand by more than two steps' travel
        lead = 2 * self.cfg.max_ee_step
        target = np.clip(target, ee - lead, ee + lead)
        target = np.clip(target, self._lo, self._hi)
        if self.cfg.action_dim == 5:
            self._yaw = float(np.clip(self._yaw + a[3] * self.cfg.max_yaw_step, -1.57, 1.57))
            d.mocap_quat[0] = (math.cos(self._yaw / 2), 0.0, 0.0, math.sin(self._yaw / 2))
        d.ctrl[:] = -0.006 if a[-1] > 0 else scene.FINGER_MAX
        per = self._n_sub // CHUNKS
        ramp = max(1, int(CHUNKS * 0.6))
        for k in range(CHUNKS):
            frac = min(1.0, (k + 1) / ramp)
            d.mocap_pos[0] = start + (target - start) * frac
            mj.mj_step(m, d, nstep=per)
        if self._instabilities() != self._unstable_seen:
            # MuJoCo reset the data to the model defaults: put a valid scene back, as a human
            # would, instead of continuing from a meaningless state
            log.warning("simulation became unstable (task %s); re-drew the scene", self._task.name)
            self.recoveries += 1
            self._init_state(self.np_random)
            return self._obs(), 0.0, False, False, self._info()
        self._finish_step()
        info = self._info()
        reward = 1.0 if info["success"] else 0.0
        return self._obs(), reward, False, False, info

    def render(self) -> np.ndarray:
        """The latest camera frame (uint8, S x S x 3)."""
        if self._image is None:
            raise RuntimeError("render() before reset(): call env.reset() first")
        return self._image.copy()

    def close(self) -> None:
        """Release the renderer (idempotent)."""
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            renderer.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    # ------------------------------------------------------------------ internals
    def _check_action(self, action) -> np.ndarray:
        dim = self.cfg.action_dim
        try:
            arr = np.asarray(action)
        except Exception as err:  # ragged lists and the like
            raise InvalidActionError(f"action is not an array of {dim} numbers: {err}") from None
        if arr.dtype.kind not in "fiu":
            raise InvalidActionError(
                f"action has dtype {arr.dtype} (kind {arr.dtype.kind!r}); expected a float "
                f"array of shape ({dim},)"
            )
        if arr.shape != (dim,):
            raise InvalidActionError(
                f"action has shape {arr.shape}; expected ({dim},) = "
                + ("(dx, dy, dz, gripper)" if dim == 4 else "(dx, dy, dz, dyaw, gripper)")
            )
        arr = arr.astype(np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InvalidActionError(
                f"action has non-finite values at index {np.flatnonzero(bad).tolist()}: "
                f"{arr.tolist()}"
            )
        return arr

    def _set_physics(self, name: str, on: bool) -> None:
        body, geoms = self._obj_body[name], self._obj_geoms[name]
        self.model.body_gravcomp[body] = 0.0 if on else 1.0
        self.model.geom_contype[geoms] = 1 if on else 0
        self.model.geom_conaffinity[geoms] = 1 if on else 0

    def _place(self, name: str, xy: tuple[float, float], z: float, yaw: float) -> None:
        q, v = self._obj_qadr[name], self._obj_vadr[name]
        self.data.qpos[q : q + 7] = (
            xy[0],
            xy[1],
            z,
            math.cos(yaw / 2),
            0.0,
            0.0,
            math.sin(yaw / 2),
        )
        self.data.qvel[v : v + 6] = 0.0

    def _instabilities(self) -> int:
        """How often MuJoCo found NaN/huge values and reset the data (it counts them)."""
        w = self._mj.mjtWarning
        return sum(
            int(self.data.warning[k].number)
            for k in (w.mjWARN_BADQACC, w.mjWARN_BADQVEL, w.mjWARN_BADQPOS)
        )

    def _finish_step(self) -> None:
        d = self.data
        d.qpos[self._arm_q] = scene.arm_ik(d.xpos[self._hand_body])
        d.qvel[self._arm_v] = 0.0
        self._mj.mj_kinematics(self.model, d)
        self._renderer.update_scene(d, camera=self._cam)
        image = self._renderer.render()
        if self._ss == 2:
            px = image.astype(np.uint16)
            px = px[0::2, 0::2] + px[1::2, 0::2] + px[0::2, 1::2] + px[1::2, 1::2]
            image = ((px + 2) >> 2).astype(np.uint8)
        self._image = image

    def _obs(self) -> dict[str, np.ndarray]:
        proprio = np.empty(self._proprio_dim, dtype=np.float32)
        proprio[:3] = self.ee_position()
        proprio[3] = self.gripper_opening()
        if self._proprio_dim == STATE_DIM:  # privileged state: where the task's object is
            proprio[4:] = self.object_position(self._task.obj)
            proprio[4:7] += self.cfg.shift.object_offset
        return {"image": self._image.copy(), "proprio": proprio}

    def _info(self) -> dict[str, Any]:
        return {
            "success": self.is_success(),
            "task": self._task.name,
            "language": self._task.language,
        }
