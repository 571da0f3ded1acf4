"""Simulated and real environment settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SceneVariation:
    """Optional randomisation of the scene, for robustness tests (all off by default)."""

    lighting: float = 0.0
    """Relative jitter of light intensity/direction per episode (0 = off, 0.3 = strong)."""
    camera_jitter: float = 0.0
    """Camera position jitter in metres per episode (0 = off)."""
    distractors: int = 0
    """Number of extra distractor objects placed on the table."""
    object_color: float = 0.0
    """Per episode, every object's colour channels are scaled by 1 +- this (each channel on its
    own, so hue and brightness both change; 0 = off, 0.3 = strong)."""


@dataclass(frozen=True)
class SceneShift:
    """How the online scene differs from the scene the offline data was collected in.

    The paper fine-tunes online because the robot's scene is not the one of its data (object
    placements, fixtures, lighting). The actors and the online evaluator run the simulator with
    ``env.online`` applied (:func:`robofume.envs.online_env`); data generation never does.
    """

    start_offset: tuple[float, float] = (0.0, 0.0)
    """Where a reset puts the task object, moved by (dx, dy) metres from its place's centre
    (flat places only: an object starting in a bin stays in the bin)."""
    start_jitter: float = 0.0
    """Extra uniform jitter (+- metres) of that start position, on top of the place's own."""
    action_gain: float = 1.0
    """End-effector travel per unit of action relative to ``env.max_ee_step`` (a controller
    tuned differently from the one that recorded the demos)."""

    object_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Privileged state only: the task object's position as the policy sees it is off by this
    (metres): a tracker or camera calibrated differently from the one of the data."""

    @property
    def active(self) -> bool:
        return (
            tuple(self.start_offset) != (0.0, 0.0)
            or self.start_jitter > 0
            or self.action_gain != 1.0
            or tuple(self.object_offset) != (0.0, 0.0, 0.0)
        )


@dataclass(frozen=True)
class WidowXConfig:
    """The real WidowX 250 through ``interbotix_xs_modules`` (env.kind: widowx)."""

    robot_model: str = "wx250s"
    """Interbotix robot model (``wx250s``: 6 DoF; ``wx250``: 5 DoF, then action_dim must be 4)."""
    home: tuple[float, float, float] = (0.30, 0.0, 0.15)
    """End-effector position (m) that ``reset()`` moves to (inside the workspace bounds)."""
    pitch: float = 1.57
    """Gripper pitch (rad) held throughout; 1.57 points the gripper down."""
    reset_moving_time: float = 1.5
    """Seconds the arm takes to move home on ``reset()``."""
    settle_fraction: float = 0.8
    """``step()`` reads camera and joints this fraction of the control period after sending
    the command (the rest of the tick is left for the policy)."""
    max_effort: float = 0.0
    """Joint effort (mA, from the joint states) counted as an overload (0: only the motors'
    own Hardware_Error_Status flags)."""
    languages: dict[str, str] = field(default_factory=dict)
    """Instructions of real-robot tasks not in the simulated task registry, keyed by name."""


@dataclass(frozen=True)
class EnvConfig:
    """The robot environment: the MuJoCo tabletop or the real WidowX 250."""

    kind: Literal["sim", "widowx"] = "sim"
    """`sim`: the project's MuJoCo tabletop; `widowx`: the real robot through Interbotix."""
    image_size: int = 100
    """Side of the square RGB camera image in pixels."""
    observation: Literal["pixels", "state"] = "pixels"
    """`pixels`: the policy sees the camera image and proprio (RoboFuME proper). `state`: the
    policy also gets privileged simulator state (the task object's position appended to
    proprio, 7 numbers) and no image encoder; a debugging and benchmarking mode that checks
    the learner in minutes. The camera frame is still rendered (reward model, panels)."""
    control_hz: float = 5.0
    """Control frequency of end-effector delta actions."""
    action_dim: int = 4
    """Action size: 4 = (dx, dy, dz, gripper) in [-1, 1]; 5 = (dx, dy, dz, dyaw, gripper)."""
    max_ee_step: float = 0.04
    """End-effector displacement (m) per step for a full action (|dx| = 1); 0.2 m/s at 5 Hz."""
    max_yaw_step: float = 0.25
    """Gripper rotation (rad) per step for a full dyaw action (action_dim 5 only)."""
    max_episode_steps: int = 150
    """Step limit of one episode (forward or reset) before the instruction switches."""
    render_backend: Literal["egl", "osmesa", "glfw"] = "egl"
    """MuJoCo GL backend for headless rendering (sets MUJOCO_GL before import)."""
    scene: SceneVariation = field(default_factory=SceneVariation)
    """Scene variation (lighting, camera pose, distractors)."""
    shift: SceneShift = field(default_factory=SceneShift)
    """The shift this environment runs under (set from ``online`` by ``online_env``; keep it
    empty in presets)."""
    online: SceneShift = field(default_factory=SceneShift)
    """The online scene: how the scene the actors and the evaluator run in differs from the
    offline data's (simulation; none by default)."""
    camera_index: int = 0
    """Real robot only: OpenCV index of the USB camera."""
    workspace_low: tuple[float, float, float] = (0.15, -0.25, 0.03)
    """Lower end-effector bound (x, y, z) in metres; leaving it triggers a safe stop."""
    workspace_high: tuple[float, float, float] = (0.45, 0.25, 0.30)
    """Upper end-effector bound (x, y, z) in metres."""
    widowx: WidowXConfig = field(default_factory=WidowXConfig)
    """Real robot only: arm model, home pose, overload threshold, task instructions."""
