"""On the real WidowX 250 with its USB camera (``-m robot``, ``make test-robot``).

Run on the robot PC with the arm powered, homed and the workspace clear. Each test moves the
arm by at most a few centimetres inside the configured workspace and stops it safely.
"""

from __future__ import annotations

import numpy as np
import pytest

from robofume.config import load_config
from robofume.envs.errors import InvalidActionError

pytestmark = pytest.mark.robot


@pytest.fixture(scope="module")
def env():
    from actor.run import make_actor_env

    cfg = load_config("widowx")
    env = make_actor_env(cfg, seed=0)
    yield env
    env.close()


def test_the_robot_observes_like_the_simulator(env):
    obs, _ = env.reset()
    assert obs["image"].shape == env.observation_space["image"].shape
    assert obs["image"].dtype == np.uint8 and obs["image"].std() > 0  # a real frame
    assert obs["proprio"].shape == (4,) and np.isfinite(obs["proprio"]).all()
    assert env.motor_fault() == ""


def test_a_small_action_moves_the_gripper_within_the_workspace(env):
    env.reset()
    start = env.ee_position().copy()
    action = np.zeros(env.action_space.shape, np.float32)
    action[0] = 0.5  # +x, half the per-step limit
    for _ in range(3):
        env.step(action)
    moved = env.ee_position() - start
    assert moved[0] > 0.005, f"the gripper did not move along +x: {moved}"
    assert np.all(env.ee_position() >= env._lo - 1e-3) and np.all(
        env.ee_position() <= env._hi + 1e-3
    )
    assert env.safe_stops == 0


def test_a_nan_action_stops_the_arm_and_is_reported(env):
    env.reset()
    before = env.ee_position().copy()
    bad = np.full(env.action_space.shape, np.nan, np.float32)
    with pytest.raises(InvalidActionError, match="non-finite"):
        env.step(bad)
    np.testing.assert_allclose(env.ee_position(), before, atol=0.005)
