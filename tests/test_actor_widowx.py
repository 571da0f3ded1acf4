"""The WidowX adapter against a fake of the Interbotix driver and a fake USB camera."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from robofume.config import load_config
from robofume.envs.errors import InvalidActionError, RobotFaultError

FAKES = Path(__file__).parent / "fakes"


def widowx_cfg(*overrides: str):
    return load_config(
        "smoke", overrides=["--env.kind", "widowx", "--env.image_size", "32", *overrides]
    )


@pytest.fixture
def fake_driver(monkeypatch):
    """Put the fake ``interbotix_xs_modules`` first on the path and fake ``cv2.VideoCapture``."""
    import cv2
    from fakes.camera import FakeVideoCapture

    monkeypatch.syspath_prepend(str(FAKES))
    for name in [m for m in sys.modules if m.startswith("interbotix_xs_modules")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(cv2, "VideoCapture", FakeVideoCapture)
    return FakeVideoCapture


@pytest.fixture
def env(fake_driver):
    from robofume.envs.widowx import WidowXEnv

    cfg = widowx_cfg()
    env = WidowXEnv(cfg.env, task="vase_forward", sleep=lambda s: None)
    yield env
    env.close()


def test_missing_driver_gives_a_clear_error(monkeypatch):
    from robofume.envs.widowx import WidowXEnv, WidowXUnavailableError

    for name in [m for m in sys.modules if m.startswith("interbotix_xs_modules")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "fakes" not in p])
    if importlib.util.find_spec("interbotix_xs_modules") is not None:
        pytest.skip("the real Interbotix driver is installed here")
    with pytest.raises(WidowXUnavailableError, match=r"interbotix_xs_modules.*roslaunch"):
        WidowXEnv(widowx_cfg().env, task="vase_forward")


def test_missing_camera_is_a_fault(fake_driver):
    from robofume.envs.widowx import WidowXEnv

    with pytest.raises(RobotFaultError, match="camera_index=-1"):
        WidowXEnv(widowx_cfg("--env.camera_index", "-1").env, task="vase_forward")


def test_reset_moves_home_and_observes(env, fake_driver):
    obs, info = env.reset(options={"task": "vase_reset"})
    cmd = env.bot.arm.commands[-1]
    assert (cmd["x"], cmd["y"], cmd["z"]) == pytest.approx(env.cfg.widowx.home)
    assert cmd["blocking"] is True and cmd["pitch"] == pytest.approx(env.cfg.widowx.pitch)
    assert env.bot.gripper.calls[-1][0] == "open"
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    # BGR camera -> RGB: the pattern's constant blue channel ends up last
    assert np.all(obs["image"][..., 2] == 200)
    assert obs["proprio"][:3] == pytest.approx(env.cfg.widowx.home)
    assert obs["proprio"][3] == pytest.approx(1.0)  # open
    assert info["task"] == "vase_reset" and "success" not in info
    assert fake_driver.opened_indices[-1] == env.cfg.camera_index


def test_actions_map_to_ee_pose_commands(env):
    env.reset()
    home = np.asarray(env.cfg.widowx.home)
    step = env.cfg.max_ee_step
    obs, _, terminated, truncated, info = env.step(np.array([1.0, -0.5, 0.25, 1.0], np.float32))
    cmd = env.bot.arm.commands[-1]
    expected = home + step * np.array([1.0, -0.5, 0.25])
    assert [cmd["x"], cmd["y"], cmd["z"]] == pytest.approx(expected)
    assert cmd["blocking"] is False
    assert cmd["moving_time"] == pytest.approx(1.0 / env.cfg.control_hz)
    assert env.bot.gripper.calls[-1] == ("close", 0.0)  # never blocks the tick
    assert obs["proprio"][3] == pytest.approx(0.0)
    assert not terminated and not truncated and "safe_stop" not in info
    # the same gripper command is not sent again; opening is
    env.step(np.array([0, 0, 0, 1.0]))
    env.step(np.array([0, 0, 0, -1.0]))
    assert [c[0] for c in env.bot.gripper.calls[-2:]] == ["close", "open"]
    with pytest.raises(InvalidActionError, match="non-finite"):
        env.step(np.array([np.nan, 0, 0, 0]))
    with pytest.raises(InvalidActionError, match="shape"):
        env.step(np.zeros(3))


def test_targets_are_clipped_to_the_workspace_like_the_simulator(env):
    env.reset()
    for _ in range(20):
        _, _, _, truncated, _ = env.step(np.array([0, 0, 1.0, 0]))
        assert not truncated
    assert env.bot.arm.commands[-1]["z"] == pytest.approx(env.cfg.workspace_high[2])


def test_leaving_the_workspace_is_a_safe_stop(env):
    env.reset()
    n = len(env.bot.arm.commands)
    env.bot.arm.T_sb[:3, 3] = (0.30, 0.0, -0.05)  # pushed below the table bound
    _, _, _, truncated, info = env.step(np.zeros(4))
    assert truncated and "left the workspace" in info["safe_stop"]
    assert len(env.bot.arm.commands) == n  # no command sent: the motors hold
    assert env.safe_stops == 1
    env.reset()  # back home, fine again
    assert not env.step(np.zeros(4))[3]


def test_motor_error_is_a_safe_stop_and_blocks_reset_until_cleared(env):
    env.reset()
    n = len(env.bot.arm.commands)
    env.bot.dxl.hardware_errors["elbow"] = 1 << 5
    _, _, _, truncated, info = env.step(np.array([1.0, 0, 0, 0]))
    assert truncated and "elbow: overload" in info["safe_stop"]
    assert len(env.bot.arm.commands) == n
    assert ("group", "all", "Hardware_Error_Status") in env.bot.dxl.register_reads
    with pytest.raises(RobotFaultError, match="elbow: overload"):
        env.reset()
    env.bot.dxl.robot_reboot_motors("single", "elbow", True)
    env.reset()
    assert not env.step(np.zeros(4))[3]


def test_effort_overload_is_a_safe_stop(fake_driver):
    from robofume.envs.widowx import WidowXEnv

    env = WidowXEnv(
        widowx_cfg("--env.widowx.max_effort", "900").env, task="vase_forward", sleep=lambda s: 0
    )
    env.reset()
    js = env.bot.dxl.joint_states
    js.effort[js.name.index("shoulder")] = -1200.0
    _, _, _, truncated, info = env.step(np.zeros(4))
    assert truncated and "shoulder: 1200" in info["safe_stop"]


def test_camera_dropouts(env):
    env.reset()
    env.camera.fail_next = 1  # one dropped frame is retried
    assert not env.step(np.zeros(4))[3]
    env.camera.fail_next = 2
    _, _, _, truncated, info = env.step(np.zeros(4))
    assert truncated and "camera" in info["safe_stop"]


def test_yaw_action_needs_six_joints_and_turns_the_wrist(fake_driver):
    from robofume.envs.widowx import WidowXEnv

    with pytest.raises(ValueError, match="6-DoF"):
        WidowXEnv(
            widowx_cfg("--env.action_dim", "5", "--env.widowx.robot_model", "wx250").env,
            task="vase_forward",
        )
    env = WidowXEnv(widowx_cfg("--env.action_dim", "5").env, task="vase_forward", sleep=lambda s: 0)
    env.reset()
    env.step(np.array([0, 0, 0, 1.0, 0]))
    cmd = env.bot.arm.commands[-1]
    assert cmd["yaw"] == pytest.approx(np.arctan2(cmd["y"], cmd["x"]) + env.cfg.max_yaw_step)


def test_unknown_real_task_names_its_fix(env):
    with pytest.raises(ValueError, match=r"env\.widowx\.languages"):
        env.set_task("real_forward")
