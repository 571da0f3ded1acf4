"""Fake ``interbotix_xs_modules.arm`` (ROS 1 layout): manipulator, arm, gripper, core."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np

ARM_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]
FINGER_LIMITS = (0.015, 0.037)
REACH_M = 0.65


class InterbotixRobotXSCore:
    """The ROS plumbing: joint states, motor registers, robot info, torque, reboot."""

    def __init__(self, robot_model, robot_name=None, init_node=True):
        self.robot_model = robot_model
        self.robot_name = robot_name or robot_model
        joints = (
            ARM_JOINTS
            if robot_model.endswith("s")
            else [j for j in ARM_JOINTS if j != "forearm_roll"]
        )
        self.arm_joints = list(joints)
        names = [*joints, "gripper", "left_finger", "right_finger"]
        self.joint_states = SimpleNamespace(
            name=names,
            position=[0.0] * len(names),
            velocity=[0.0] * len(names),
            effort=[0.0] * len(names),
        )
        self.js_index_map = dict(zip(names, range(len(names)), strict=True))
        self.js_mutex = threading.Lock()
        self.motors = [*joints, "gripper"]
        self.hardware_errors = dict.fromkeys(self.motors, 0)
        """Hardware_Error_Status per motor (tests set bits, e.g. 1 << 5 overload)."""
        self.register_reads: list[tuple[str, str, str]] = []
        self.reboots: list[tuple[str, str]] = []

    def robot_get_motor_registers(self, cmd_type, name, reg):
        self.register_reads.append((cmd_type, name, reg))
        motors = self.motors if cmd_type == "group" else [name]
        if reg == "Hardware_Error_Status":
            return SimpleNamespace(values=[self.hardware_errors[m] for m in motors])
        return SimpleNamespace(values=[0 for _ in motors])

    def robot_set_motor_registers(self, cmd_type, name, reg, value):
        pass

    def robot_get_robot_info(self, cmd_type, name):
        joints = self.motors if name == "all" else self.arm_joints
        return SimpleNamespace(
            joint_names=list(joints),
            num_joints=len(joints),
            joint_lower_limits=[-3.14] * len(joints),
            joint_upper_limits=[3.14] * len(joints),
            profile_type="time",
            mode="position",
        )

    def robot_get_joint_states(self):
        with self.js_mutex:
            return SimpleNamespace(
                name=list(self.joint_states.name),
                position=list(self.joint_states.position),
                velocity=list(self.joint_states.velocity),
                effort=list(self.joint_states.effort),
            )

    def robot_torque_enable(self, cmd_type, name, enable):
        pass

    def robot_reboot_motors(self, cmd_type, name, enable, smart_reboot=False):
        self.reboots.append((cmd_type, name))
        for m in self.motors if cmd_type == "group" else [name]:
            self.hardware_errors[m] = 0


class InterbotixArmXSInterface:
    """End-effector commands; the fake arm is wherever it was last commanded."""

    def __init__(self, core, robot_model, group_name, moving_time=2.0, accel_time=0.3):
        self.core = core
        self.group_name = group_name
        self.moving_time = moving_time
        self.accel_time = accel_time
        self.T_sb = np.eye(4)
        self.T_sb[:3, 3] = (0.3, 0.0, 0.2)
        self.commands: list[dict] = []

    def set_trajectory_time(self, moving_time=None, accel_time=None):
        if moving_time is not None:
            self.moving_time = moving_time
        if accel_time is not None:
            self.accel_time = accel_time

    def set_ee_pose_components(
        self,
        x=0,
        y=0,
        z=0,
        roll=0,
        pitch=0,
        yaw=None,
        custom_guess=None,
        execute=True,
        moving_time=None,
        accel_time=None,
        blocking=True,
    ):
        if yaw is None:
            yaw = math.atan2(y, x)
        self.commands.append(
            dict(
                x=x,
                y=y,
                z=z,
                roll=roll,
                pitch=pitch,
                yaw=yaw,
                moving_time=moving_time,
                blocking=blocking,
                execute=execute,
            )
        )
        theta = [0.0] * len(self.core.arm_joints)
        if math.sqrt(x * x + y * y + z * z) > REACH_M:
            return theta, False
        if execute:
            self.set_trajectory_time(moving_time, accel_time)
            self.T_sb = np.eye(4)
            self.T_sb[:3, 3] = (x, y, z)
        return theta, True

    def get_ee_pose(self):
        return np.array(self.T_sb)

    def get_ee_pose_command(self):
        return np.array(self.T_sb)

    def go_to_home_pose(self, moving_time=None, accel_time=None, blocking=True):
        self.set_ee_pose_components(x=0.358, z=0.25, moving_time=moving_time, blocking=blocking)

    def go_to_sleep_pose(self, moving_time=None, accel_time=None, blocking=True):
        self.set_ee_pose_components(x=0.1, z=0.1, moving_time=moving_time, blocking=blocking)


class InterbotixGripperXSInterface:
    """PWM gripper: ``open``/``close`` sleep ``delay`` seconds on the real robot."""

    def __init__(
        self,
        core,
        gripper_name,
        gripper_pressure=0.5,
        gripper_pressure_lower_limit=150,
        gripper_pressure_upper_limit=350,
    ):
        self.core = core
        self.gripper_name = gripper_name
        self.left_finger_index = core.js_index_map["left_finger"]
        self.left_finger_lower_limit, self.left_finger_upper_limit = FINGER_LIMITS
        self.gripper_value = gripper_pressure_lower_limit + gripper_pressure * (
            gripper_pressure_upper_limit - gripper_pressure_lower_limit
        )
        self.calls: list[tuple[str, float]] = []
        self._set(FINGER_LIMITS[1])

    def _set(self, pos):
        with self.core.js_mutex:
            self.core.joint_states.position[self.left_finger_index] = pos

    def set_pressure(self, pressure):
        self.gripper_value = 150 + pressure * 200

    def open(self, delay=1.0):
        self.calls.append(("open", delay))
        self._set(self.left_finger_upper_limit)

    def close(self, delay=1.0):
        self.calls.append(("close", delay))
        self._set(self.left_finger_lower_limit)


class InterbotixManipulatorXS:
    def __init__(
        self,
        robot_model,
        group_name="arm",
        gripper_name="gripper",
        robot_name=None,
        moving_time=2.0,
        accel_time=0.3,
        use_gripper=True,
        gripper_pressure=0.5,
        gripper_pressure_lower_limit=150,
        gripper_pressure_upper_limit=350,
        init_node=True,
    ):
        self.dxl = InterbotixRobotXSCore(robot_model, robot_name, init_node)
        self.arm = InterbotixArmXSInterface(
            self.dxl, robot_model, group_name, moving_time, accel_time
        )
        if gripper_name is not None:
            self.gripper = InterbotixGripperXSInterface(
                self.dxl,
                gripper_name,
                gripper_pressure,
                gripper_pressure_lower_limit,
                gripper_pressure_upper_limit,
            )
