"""MJCF of the robofume tabletop, generated from ``layout`` (objects, places) and arm constants.

The model: a table (top at z = 0), two bins, flat places (centre patch, plate, mat), every
object of ``layout.OBJECTS`` as a free body, a WidowX-250-like arm and a parallel two-finger
gripper, one third-person camera ``main`` and one directional key light.

How the arm moves: the gripper ("hand", a free body with gravity compensation) is welded to a
mocap body; the environment moves the mocap target and physics drags the hand along, so the
hand is compliant when it touches something. The 4-joint arm (waist, shoulder, elbow, wrist) is
drawn only: after each step its joints are set by closed-form inverse kinematics so the wrist
meets the top of the hand (``arm_ik``). Arm links do not collide; hand and fingers do.
"""

from __future__ import annotations

import math

import numpy as np

from robofume.envs.layout import BIN_WALL_HEIGHT, OBJECTS, PLACES, Place

# --- arm geometry (metres) ---
SHOULDER_Z = 0.11
"""Height of the shoulder joint above the table."""
UPPER_ARM = 0.32
"""Shoulder-to-elbow length."""
FOREARM = 0.32
"""Elbow-to-wrist length."""
WRIST_TO_EE = 0.17
"""Vertical distance from the wrist joint down to the end-effector point (pad centre)."""
PAD_HALF = (0.010, 0.005, 0.020)
"""Half extents (x, y, z) of the grasping part of a finger; the end-effector point is its
centre, 2 cm above the fingertips."""
FINGER_TOP = 0.075
"""Height of the top of the fingers (palm bottom) above the end-effector point."""
FINGER_MAX = 0.035
"""Largest distance of a pad's inner face from the centre line (opening = 2 x this)."""
PALM_TOP = 0.10
"""Height of the palm top above the end-effector point (where the wrist link ends)."""
PARK_Z = -0.2
"""Objects not in the scene wait here, inside the (opaque) table, without physics."""

TABLE_RGBA = "0.42 0.44 0.48 1"


def _f(values) -> str:
    return " ".join(f"{float(v):.5g}" for v in values)


def _lookat_xyaxes(pos: np.ndarray, target: np.ndarray) -> str:
    """MuJoCo camera ``xyaxes`` looking from pos at target with world z up."""
    fwd = target - pos
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return " ".join(f"{v:.6f}" for v in (*right, *up))


def lookat_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera quaternion (w, x, y, z) looking from pos at target with world z up."""
    right, up = np.array(_lookat_xyaxes(pos, target).split(), dtype=np.float64).reshape(2, 3)
    m = np.stack([right, up, np.cross(right, up)], axis=1)  # columns: camera axes in world
    diag = (m[0, 0], m[1, 1], m[2, 2])
    w = math.sqrt(max(0.0, 1.0 + sum(diag))) / 2
    mags = [math.sqrt(max(0.0, 1.0 + 2 * diag[k] - sum(diag))) / 2 for k in range(3)]
    signs = (m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1])
    q = np.array([w, *(math.copysign(a, b) for a, b in zip(mags, signs, strict=True))])
    return q / np.linalg.norm(q)


CAMERA_POS = np.array([0.70, 0.0, 0.70])
"""Third-person camera: in front of the table, looking back at the robot."""
CAMERA_TARGET = np.array([0.28, 0.0, 0.0])
"""Point the camera looks at."""


def _place_xml(p: Place) -> str:
    cx, cy = p.center
    if not p.is_bin:
        if p.name == "plate":
            return (
                f'<geom name="place_{p.name}" class="deco" type="cylinder" '
                f'size="{p.half[0] + 0.01} 0.0008" pos="{cx} {cy} 0.0008" rgba="{_f(p.rgba)}"/>'
            )
        return (
            f'<geom name="place_{p.name}" class="deco" type="box" '
            f'size="{p.half[0]} {p.half[1]} 0.0006" pos="{cx} {cy} 0.0006" rgba="{_f(p.rgba)}"/>'
        )
    t = 0.006  # wall thickness
    hx, hy, hz = p.half[0], p.half[1], BIN_WALL_HEIGHT / 2
    rgba = _f(p.rgba)
    floor = _f([p.rgba[0] * 0.8, p.rgba[1] * 0.8, p.rgba[2] * 0.8, 1])
    parts = [
        f'<geom class="bin" type="box" size="{hx + t} {hy + t} {p.floor / 2}" '
        f'pos="0 0 {p.floor / 2}" rgba="{floor}"/>',
        f'<geom class="bin" type="box" size="{t / 2} {hy + t} {hz}" pos="{hx + t / 2} 0 {hz}" '
        f'rgba="{rgba}"/>',
        f'<geom class="bin" type="box" size="{t / 2} {hy + t} {hz}" pos="{-hx - t / 2} 0 {hz}" '
        f'rgba="{rgba}"/>',
        f'<geom class="bin" type="box" size="{hx} {t / 2} {hz}" pos="0 {hy + t / 2} {hz}" '
        f'rgba="{rgba}"/>',
        f'<geom class="bin" type="box" size="{hx} {t / 2} {hz}" pos="0 {-hy - t / 2} {hz}" '
        f'rgba="{rgba}"/>',
    ]
    return f'<body name="place_{p.name}" pos="{cx} {cy} 0">' + "".join(parts) + "</body>"


RIM = (0.08, 0.56, 0.30, 0.03)
"""Low walls around the play area: x from RIM[0] to RIM[1], |y| <= RIM[2], RIM[3] high; they
keep rolling objects on the table (the gripper never reaches them)."""


def _rim_xml() -> str:
    x0, x1, y, h = RIM
    t, cx, hx = 0.008, (x0 + x1) / 2, (x1 - x0) / 2
    rgba = "0.32 0.33 0.36 1"
    walls = [
        (cx, y + t / 2, hx + t, t / 2),
        (cx, -y - t / 2, hx + t, t / 2),
        (x0 - t / 2, 0.0, t / 2, y),
        (x1 + t / 2, 0.0, t / 2, y),
    ]
    return "".join(
        f'<geom name="rim{i}" class="bin" type="box" size="{sx} {sy} {h / 2}" '
        f'pos="{px} {py} {h / 2}" rgba="{rgba}"/>'
        for i, (px, py, sx, sy) in enumerate(walls)
    )


def _object_xml(i: int, name: str) -> str:
    spec = OBJECTS[name]
    geoms = "".join(
        f'<geom class="obj" type="{g.type}" size="{_f(g.size)}" pos="{_f(g.pos)}" '
        f'euler="{_f(g.euler)}" rgba="{_f(g.rgba)}"/>'
        for g in spec.geoms
    )
    return (
        f'<body name="obj_{name}" pos="0.25 {-0.3 + 0.06 * i} {PARK_Z}">'
        f'<freejoint name="obj_{name}"/>{geoms}</body>'
    )


def _arm_xml() -> str:
    dark, mid = "0.12 0.12 0.14 1", "0.3 0.3 0.34 1"
    return f"""
    <body name="arm_base" pos="0 0 0">
      <geom class="deco" type="cylinder" size="0.065 0.02" pos="0 0 0.02" rgba="{dark}"/>
      <body name="waist" pos="0 0 0.04" gravcomp="1">
        <joint name="waist" type="hinge" axis="0 0 1" class="arm"/>
        <inertial pos="0 0 0" mass="0.1" diaginertia="1e-4 1e-4 1e-4"/>
        <geom class="deco" type="box" size="0.04 0.05 0.035" pos="0 0 0.035" rgba="{mid}"/>
        <body name="upper_arm" pos="0 0 {SHOULDER_Z - 0.04}" gravcomp="1">
          <joint name="shoulder" type="hinge" axis="0 1 0" class="arm"/>
          <inertial pos="0 0 0" mass="0.1" diaginertia="1e-4 1e-4 1e-4"/>
          <geom class="deco" type="capsule" size="0.022" fromto="0 0 0 0 0 {UPPER_ARM}"
                rgba="{dark}"/>
          <body name="forearm" pos="0 0 {UPPER_ARM}" gravcomp="1">
            <joint name="elbow" type="hinge" axis="0 1 0" class="arm"/>
          <inertial pos="0 0 0" mass="0.1" diaginertia="1e-4 1e-4 1e-4"/>
            <geom class="deco" type="capsule" size="0.02" fromto="0 0 0 0 0 {FOREARM}"
                  rgba="{mid}"/>
            <body name="wrist" pos="0 0 {FOREARM}" gravcomp="1">
              <joint name="wrist" type="hinge" axis="0 1 0" class="arm"/>
          <inertial pos="0 0 0" mass="0.1" diaginertia="1e-4 1e-4 1e-4"/>
              <geom class="deco" type="cylinder" size="0.018"
                    fromto="0 0 0 0 0 {WRIST_TO_EE - PALM_TOP}" rgba="{dark}"/>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _hand_xml() -> str:
    px, py, pz = PAD_HALF
    fz, fc = (FINGER_TOP + pz) / 2, (FINGER_TOP - pz) / 2  # finger: tips to palm
    palm_h = PALM_TOP - FINGER_TOP
    grey = "0.2 0.2 0.22 1"
    return f"""
    <body name="mocap" mocap="true" pos="0.25 0 0.16"/>
    <body name="hand" pos="0.25 0 0.16" gravcomp="1">
      <freejoint name="hand"/>
      <inertial pos="0 0 0.03" mass="0.3" diaginertia="0.0005 0.0005 0.0005"/>
      <site name="ee" pos="0 0 0" size="0.004" rgba="1 0 0 0"/>
      <geom name="palm" class="hand" type="box" size="0.02 {FINGER_MAX + 2 * py + 0.004}
            {palm_h / 2}" pos="0 0 {FINGER_TOP + palm_h / 2}" rgba="{grey}"/>
      <body name="finger_l" gravcomp="1">
        <joint name="finger_l" type="slide" axis="0 1 0" range="0 {FINGER_MAX}" damping="3"/>
        <geom name="pad_l" class="pad" type="box" size="{px} {py} {fz}" pos="0 {py} {fc}"/>
      </body>
      <body name="finger_r" gravcomp="1">
        <joint name="finger_r" type="slide" axis="0 -1 0" range="0 {FINGER_MAX}" damping="3"/>
        <geom name="pad_r" class="pad" type="box" size="{px} {py} {fz}" pos="0 {-py} {fc}"/>
      </body>
    </body>"""


def build_xml(offscreen: int = 128) -> str:
    """The full MJCF of the tabletop (offscreen buffer at least ``offscreen`` pixels wide)."""
    buf = max(int(offscreen), 64)
    places = "".join(_place_xml(p) for p in PLACES.values())
    objects = "".join(_object_xml(i, n) for i, n in enumerate(OBJECTS))
    cam = _lookat_xyaxes(CAMERA_POS, CAMERA_TARGET)
    return f"""
<mujoco model="robofume_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <quality shadowsize="0" offsamples="0" numslices="20" numstacks="8"/>
    <global offwidth="{buf}" offheight="{buf}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.3 0.3 0.3" specular="0 0 0"/>
  </visual>
  <default>
    <geom solref="0.005 1" solimp="0.95 0.99 0.001"/>
    <default class="deco"><geom contype="0" conaffinity="0" group="1" mass="0"/></default>
    <default class="arm"><joint damping="1" armature="0.01"/></default>
    <default class="bin"><geom contype="1" conaffinity="1" friction="0.8 0.005 0.0001"/></default>
    <default class="obj">
      <geom contype="1" conaffinity="1" density="400" friction="1.0 0.01 0.0002" condim="4"/>
    </default>
    <default class="hand"><geom contype="1" conaffinity="1" friction="1 0.01 0.0001"/></default>
    <default class="pad">
      <geom contype="1" conaffinity="1" friction="1.6 0.02 0.0002" condim="4" mass="0.02"
            rgba="0.85 0.85 0.88 1"/>
    </default>
  </default>
  <worldbody>
    <light name="key" directional="true" pos="0.3 0.2 1.5" dir="-0.2 -0.1 -1"
           diffuse="0.6 0.6 0.6" specular="0.1 0.1 0.1" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.25 0.22 0.2 1"/>
    {_rim_xml()}
    <geom name="table" type="box" size="0.45 0.5 0.15" pos="0.25 0 -0.15"
          rgba="{TABLE_RGBA}" friction="0.8 0.005 0.0001"/>
    {places}
    {objects}
    {_arm_xml()}
    {_hand_xml()}
    <camera name="main" pos="{_f(CAMERA_POS)}" xyaxes="{cam}" fovy="45"/>
  </worldbody>
  <contact><exclude body1="finger_l" body2="finger_r"/></contact>
  <equality>
    <weld name="ee_weld" body1="mocap" body2="hand" solref="0.01 1"/>
  </equality>
  <actuator>
    <position name="finger_l" joint="finger_l" kp="300" ctrlrange="-0.006 {FINGER_MAX}"
              forcerange="-10 10"/>
    <position name="finger_r" joint="finger_r" kp="300" ctrlrange="-0.006 {FINGER_MAX}"
              forcerange="-10 10"/>
  </actuator>
</mujoco>
"""


def arm_ik(hand_pos: np.ndarray) -> tuple[float, float, float, float]:
    """Joint angles (waist, shoulder, elbow, wrist) that put the wrist on top of the hand.

    Closed form: the waist faces the wrist point, a planar two-link solution (elbow up) reaches
    it, and the wrist angle points the last link straight down. Unreachable points are reached
    as closely as the links allow (the arm stretches toward them).
    """
    wx, wy, wz = float(hand_pos[0]), float(hand_pos[1]), float(hand_pos[2]) + WRIST_TO_EE
    waist = math.atan2(wy, wx)
    r = math.hypot(wx, wy)
    z = wz - SHOULDER_Z
    d2 = r * r + z * z
    c2 = (d2 - UPPER_ARM**2 - FOREARM**2) / (2 * UPPER_ARM * FOREARM)
    elbow = math.acos(max(-1.0, min(1.0, c2)))
    shoulder = math.atan2(r, z) - math.atan2(
        FOREARM * math.sin(elbow), UPPER_ARM + FOREARM * math.cos(elbow)
    )
    wrist = math.pi - shoulder - elbow
    return waist, shoulder, elbow, wrist


class SceneVariator:
    """Per-episode scene variation (``cfg.env.scene``) applied to a compiled model in place.

    Lighting: the key light's brightness and the headlight's ambient scale by 1 +- ``lighting``
    and the key light's direction tilts by about ``lighting`` radians. Camera: its position moves
    up to ``camera_jitter`` metres per axis while it keeps looking at the table centre. Object
    colour: each colour channel of every object's geoms scales by 1 +- ``object_color`` (one
    draw per object and channel). With everything off the model is restored to its defaults,
    so variation never leaks between episodes. (Distractor objects are placed by the
    environment.)
    """

    def __init__(self, model) -> None:
        self.model = model
        self.cam = model.camera("main").id
        self.light = model.light("key").id
        self.diffuse = model.light_diffuse[self.light].copy()
        self.direction = model.light_dir[self.light].copy()
        self.ambient = model.vis.headlight.ambient.copy()
        self.cam_pos = model.cam_pos[self.cam].copy()
        self.cam_quat = model.cam_quat[self.cam].copy()
        self.object_geoms = {
            body: np.flatnonzero(model.geom_bodyid == model.body(f"obj_{body}").id)
            for body in OBJECTS
        }
        self.geom_rgba = model.geom_rgba.copy()

    def apply(self, variation, rng: np.random.Generator) -> None:
        """Restore the defaults, then draw this episode's variation from ``rng``."""
        m = self.model
        m.light_diffuse[self.light] = self.diffuse
        m.light_dir[self.light] = self.direction
        m.vis.headlight.ambient[:] = self.ambient
        m.cam_pos[self.cam] = self.cam_pos
        m.cam_quat[self.cam] = self.cam_quat
        m.geom_rgba[:] = self.geom_rgba
        amount = float(variation.lighting)
        if amount > 0:
            scale = 1 + rng.uniform(-amount, amount)
            m.light_diffuse[self.light] = np.clip(self.diffuse * scale, 0, 1)
            direction = self.direction + rng.normal(0, amount, size=3)
            direction[2] = -abs(direction[2]) - 0.2  # keep it shining downwards
            m.light_dir[self.light] = direction / np.linalg.norm(direction)
            ambient = self.ambient * (1 + rng.uniform(-amount, amount))
            m.vis.headlight.ambient[:] = np.clip(ambient, 0, 1)
        jitter = float(variation.camera_jitter)
        if jitter > 0:
            pos = CAMERA_POS + rng.uniform(-jitter, jitter, size=3)
            m.cam_pos[self.cam] = pos
            m.cam_quat[self.cam] = lookat_quat(pos, CAMERA_TARGET)
        colour = float(variation.object_color)
        if colour > 0:
            for geoms in self.object_geoms.values():
                scale = 1 + rng.uniform(-colour, colour, size=3)
                m.geom_rgba[geoms, :3] = np.clip(self.geom_rgba[geoms, :3] * scale, 0, 1)
