"""``WidowXEnv``: the real WidowX 250 with a USB camera, behind the simulator's Gymnasium API.

The driver, ``interbotix_xs_modules`` (``InterbotixManipulatorXS``), comes with the
Interbotix ROS install on the robot PC, not from PyPI: it is imported only when the robot is
opened, and its absence gives a clear error saying how to get it. The camera is an OpenCV
``VideoCapture(env.camera_index)``; frames are centre-cropped and resized to ``image_size``.

Same observation and action as ``TabletopEnv``: ``{"image": uint8 (S,S,3), "proprio":
float32 (ee x, y, z, gripper opening in [0, 1])}``; action ``(dx, dy, dz[, dyaw], gripper)``
in [-1, 1] moves the end-effector target by ``action * max_ee_step`` (clipped to the
workspace, like the simulator) through ``arm.set_ee_pose_components`` (non-blocking, moving
time = one control period); ``gripper > 0`` closes, ``<= 0`` opens. ``step()`` returns the
observation ``widowx.settle_fraction`` of a period after the command.

Safety: before each command the motors' ``Hardware_Error_Status`` registers (overload,
overheating, electrical shock, encoder, input voltage) and, optionally, joint efforts are
checked, and the measured end-effector position must lie inside the workspace bounds (2 cm
tolerance). Any violation is a *safe stop*: no command is sent (the motors hold the pose)
and ``step`` returns ``truncated=True`` with ``info["safe_stop"]`` naming the cause; the
actor counts it as an interruption and calls ``reset()``, which raises
:class:`RobotFaultError` while a motor error persists. There is no ground-truth success on
the real robot (``info`` has no ``"success"`` key).
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from robofume.config.env import EnvConfig
from robofume.envs.errors import InvalidActionError, RobotFaultError

log = logging.getLogger(__name__)

DRIVER_MODULES = ("interbotix_xs_modules.arm", "interbotix_xs_modules.xs_robot.arm")
"""ROS 1 and ROS 2 locations of ``InterbotixManipulatorXS``."""
ERROR_BITS = {
    0: "input voltage",
    2: "overheating",
    3: "motor encoder",
    4: "electrical shock",
    5: "overload",
}
"""Dynamixel X-series Hardware_Error_Status bits."""
BOUNDS_TOLERANCE_M = 0.02


class WidowXUnavailableError(ImportError):
    """``interbotix_xs_modules`` (the Interbotix ROS Python API) is not importable here."""


def load_manipulator_class() -> type:
    """``InterbotixManipulatorXS`` from the installed Interbotix ROS packages."""
    errors = []
    for name in DRIVER_MODULES:
        try:
            return importlib.import_module(name).InterbotixManipulatorXS
        except ImportError as err:
            errors.append(f"{name}: {err}")
    raise WidowXUnavailableError(
        "env.kind=widowx needs the Interbotix ROS Python API (`interbotix_xs_modules`), "
        f"which is not importable here ({'; '.join(errors)}). It is not on PyPI: install the "
        "Interbotix X-series arm packages on the robot PC, source the ROS workspace "
        "(e.g. `source ~/interbotix_ws/devel/setup.bash`), start the driver "
        "(`roslaunch interbotix_xsarm_control xsarm_control.launch robot_model:=wx250s`) "
        "and run the actor from that shell."
    )


def describe_errors(status: int) -> str:
    names = [name for bit, name in ERROR_BITS.items() if status >> bit & 1]
    return "/".join(names) or f"error status {status}"


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    """BGR camera frame -> RGB, centre-cropped to a square, resized to ``size``."""
    import cv2

    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = frame[top : top + side, left : left + side]
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.uint8)


class WidowXEnv(gym.Env):
    """The WidowX 250 + USB camera, with the simulator's observation/action conventions."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        cfg: EnvConfig,
        task: str = "real_forward",
        *,
        robot: Any = None,
        camera: Any = None,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        self.cfg = cfg
        self.w = cfg.widowx
        self._sleep = sleep
        if cfg.action_dim not in (4, 5):
            raise ValueError(f"env.action_dim must be 4 or 5 for the WidowX, got {cfg.action_dim}")
        if cfg.action_dim == 5 and not self.w.robot_model.endswith("s"):
            raise ValueError(
                f"action_dim 5 (dyaw) needs a 6-DoF arm; {self.w.robot_model!r} has 5 joints"
            )
        self.period = 1.0 / cfg.control_hz
        self._lo = np.asarray(cfg.workspace_low, np.float64)
        self._hi = np.asarray(cfg.workspace_high, np.float64)
        home = np.asarray(self.w.home, np.float64)
        if np.any(home < self._lo) or np.any(home > self._hi):
            raise ValueError(f"env.widowx.home {self.w.home} lies outside the workspace bounds")
        size = cfg.image_size
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (cfg.action_dim,), np.float32)
        self.bot = robot if robot is not None else self._connect()
        self.camera = camera if camera is not None else self._open_camera()
        self._motor_names = self._group_joints("all")
        self._target = home.copy()
        self._yaw = 0.0
        self._gripper_closed: bool | None = None
        self._last_image: np.ndarray | None = None
        self.safe_stops = 0
        self.ik_failures = 0
        self.set_task(task)

    # --- connections --------------------------------------------------------------------
    def _connect(self) -> Any:
        cls = load_manipulator_class()
        log.info("connecting to the %s through interbotix_xs_modules", self.w.robot_model)
        return cls(self.w.robot_model, "arm", "gripper")

    def _open_camera(self) -> Any:
        import cv2

        cap = cv2.VideoCapture(self.cfg.camera_index)
        if not cap.isOpened():
            raise RobotFaultError(
                f"USB camera env.camera_index={self.cfg.camera_index} could not be opened "
                "(is it plugged in? `ls /dev/video*` lists the indices)"
            )
        return cap

    def _group_joints(self, group: str) -> list[str]:
        try:
            return list(self.bot.dxl.robot_get_robot_info("group", group).joint_names)
        except Exception as err:  # older drivers: fall back to the joint-state order
            log.debug("robot info for group %s unavailable (%s)", group, err)
            return list(self.bot.dxl.robot_get_joint_states().name)

    # --- task ---------------------------------------------------------------------------
    @property
    def task(self) -> Any:
        return self._task

    def set_task(self, task: str) -> None:
        """Change the instruction only (reset-free)."""
        from types import SimpleNamespace

        name = getattr(task, "name", task)
        language = self.w.languages.get(name)
        if language is None:
            from robofume.tasks import get_task

            try:
                language = get_task(name).language
            except KeyError:
                raise ValueError(
                    f"unknown task {name!r} for the WidowX: add its instruction to "
                    "env.widowx.languages (task name -> instruction)"
                ) from None
        self._task = SimpleNamespace(name=name, language=language)

    # --- sensing ------------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        return np.asarray(self.bot.arm.get_ee_pose(), np.float64)[:3, 3].copy()

    def gripper_opening(self) -> float:
        g = self.bot.gripper
        core = self.bot.dxl
        with core.js_mutex:
            pos = core.joint_states.position[g.left_finger_index]
        lo, hi = g.left_finger_lower_limit, g.left_finger_upper_limit
        return float(np.clip((pos - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 0.0

    def _frame(self) -> np.ndarray:
        ok, frame = self.camera.read()
        if not ok or frame is None:
            ok, frame = self.camera.read()  # one retry: USB cameras drop the odd frame
        if not ok or frame is None:
            raise RobotFaultError(f"USB camera {self.cfg.camera_index} returned no frame")
        self._last_image = _square(np.asarray(frame), self.cfg.image_size)
        return self._last_image

    def _obs(self) -> dict[str, np.ndarray]:
        proprio = np.empty(4, np.float32)
        proprio[:3] = self.ee_position()
        proprio[3] = self.gripper_opening()
        return {"image": self._frame(), "proprio": proprio}

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {"task": self._task.name, "language": self._task.language, **extra}

    # --- safety -------------------------------------------------------------------------
    def motor_fault(self) -> str:
        """Why the arm must stop ('' when it is fine): motor error flags or overload."""
        try:
            reply = self.bot.dxl.robot_get_motor_registers("group", "all", "Hardware_Error_Status")
        except Exception as err:
            return f"cannot read the motors' error registers: {err}"
        values = list(getattr(reply, "values", reply))
        bad = [
            f"{name}: {describe_errors(int(v))}"
            for name, v in zip(self._motor_names, values, strict=False)
            if int(v)
        ]
        if bad:
            return "motor error (" + ", ".join(bad) + ")"
        if self.w.max_effort > 0:
            js = self.bot.dxl.robot_get_joint_states()
            over = [
                f"{n}: {abs(e):.0f}"
                for n, e in zip(js.name, js.effort, strict=False)
                if abs(e) > self.w.max_effort
            ]
            if over:
                return f"torque overload above {self.w.max_effort:.0f} mA (" + ", ".join(over) + ")"
        return ""

    def _outside(self, ee: np.ndarray) -> bool:
        tol = BOUNDS_TOLERANCE_M
        return bool(np.any(ee < self._lo - tol) or np.any(ee > self._hi + tol))

    def _safe_stop(self, reason: str) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.safe_stops += 1
        log.warning("safe stop %d: %s; holding pose", self.safe_stops, reason)
        try:
            obs = self._obs()
        except RobotFaultError:
            image = self._last_image
            if image is None:
                image = np.zeros((self.cfg.image_size,) * 2 + (3,), np.uint8)
            obs = {"image": image, "proprio": np.zeros(4, np.float32)}
        return obs, 0.0, False, True, self._info(safe_stop=reason)

    # --- gym API ------------------------------------------------------------------------
    def _check_action(self, action: Any) -> np.ndarray:
        dim = self.cfg.action_dim
        try:
            arr = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InvalidActionError(f"action is not an array of {dim} numbers: {err}") from None
        if arr.shape != (dim,):
            raise InvalidActionError(f"action has shape {arr.shape}; expected ({dim},)")
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr)).tolist()
            raise InvalidActionError(f"action has non-finite values at index {bad}: {arr}")
        return np.clip(arr, -1.0, 1.0)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        a = self._check_action(action)
        fault = self.motor_fault()
        if fault:
            return self._safe_stop(fault)
        ee = self.ee_position()
        if self._outside(ee):
            return self._safe_stop(
                f"end-effector at {np.round(ee, 3).tolist()} left the workspace "
                f"[{self.cfg.workspace_low}, {self.cfg.workspace_high}]"
            )
        sent = time.monotonic()
        lead = 2 * self.cfg.max_ee_step
        target = np.clip(self._target + a[:3] * self.cfg.max_ee_step, ee - lead, ee + lead)
        target = np.clip(target, self._lo, self._hi)
        pose = {"x": target[0], "y": target[1], "z": target[2], "roll": 0.0, "pitch": self.w.pitch}
        if self.cfg.action_dim == 5:
            self._yaw = float(np.clip(self._yaw + a[3] * self.cfg.max_yaw_step, -1.57, 1.57))
            pose["yaw"] = math.atan2(target[1], target[0]) + self._yaw
        _, ok = self.bot.arm.set_ee_pose_components(
            **{k: float(v) for k, v in pose.items()}, moving_time=self.period, blocking=False
        )
        extra: dict[str, Any] = {}
        if ok:
            self._target = target
        else:
            self.ik_failures += 1
            extra["ik_failed"] = True
        close = bool(a[-1] > 0)
        if close != self._gripper_closed:
            (self.bot.gripper.close if close else self.bot.gripper.open)(delay=0.0)
            self._gripper_closed = close
        wait = sent + self.w.settle_fraction * self.period - time.monotonic()
        if wait > 0:
            self._sleep(wait)
        try:
            obs = self._obs()
        except RobotFaultError as err:
            return self._safe_stop(str(err))
        return obs, 0.0, False, False, self._info(**extra)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Move home with the gripper open (the scene is the human's); set the task."""
        super().reset(seed=seed)
        if (options or {}).get("task") is not None:
            self.set_task(options["task"])
        fault = self.motor_fault()
        if fault:
            raise RobotFaultError(
                f"{fault}: clear it on the robot (reboot the motor, e.g. "
                "`robot_reboot_motors('single', <joint>, True)`, or power-cycle) and intervene"
            )
        home = np.asarray(self.w.home, np.float64)
        _, ok = self.bot.arm.set_ee_pose_components(
            x=float(home[0]),
            y=float(home[1]),
            z=float(home[2]),
            roll=0.0,
            pitch=float(self.w.pitch),
            moving_time=self.w.reset_moving_time,
            blocking=True,
        )
        if not ok:
            raise RobotFaultError(f"no IK solution for the home pose {self.w.home}")
        self.bot.gripper.open(delay=0.5)
        self._gripper_closed = False
        self._target = home.copy()
        self._yaw = 0.0
        return self._obs(), self._info()

    def render(self) -> np.ndarray:
        if self._last_image is None:
            raise RuntimeError("render() before reset()")
        return self._last_image.copy()

    def close(self) -> None:
        camera, self.camera = getattr(self, "camera", None), None
        if camera is not None:
            camera.release()
