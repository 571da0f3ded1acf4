"""The tabletop environment's Gymnasium contract on the real MuJoCo model (small images)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from robofume.config import EnvConfig, SceneVariation
from robofume.envs import InvalidActionError, make_env
from robofume.envs.layout import OBJECTS, PLACES

CFG = EnvConfig(image_size=32)


@pytest.fixture(scope="module")
def env():
    env = make_env(CFG, task="vase_forward", seed=0)
    yield env
    env.close()


def test_observation_action_and_info_follow_the_contract(env):
    obs, info = env.reset(seed=1)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    assert obs["proprio"].shape == (4,) and obs["proprio"].dtype == np.float32
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert info == {
        "success": False,
        "task": "vase_forward",
        "language": "put the vase in the correct bin",
    }
    # the gripper starts open; the end effector starts above the table, inside the workspace
    assert obs["proprio"][3] == pytest.approx(1.0, abs=0.02)
    assert np.all(obs["proprio"][:3] >= CFG.workspace_low)
    assert np.all(obs["proprio"][:3] <= CFG.workspace_high)
    obs2, reward, terminated, truncated, info2 = env.step(np.zeros(4, np.float32))
    assert terminated is False and truncated is False
    assert reward == (1.0 if info2["success"] else 0.0)
    assert set(info2) == {"success", "task", "language"}
    assert env.observation_space.contains(obs2)


def test_actions_move_the_end_effector_and_the_gripper(env):
    obs, _ = env.reset(seed=2)
    start = obs["proprio"].copy()
    for _ in range(3):
        obs, *_ = env.step(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
    moved = obs["proprio"][:3] - start[:3]
    assert moved[0] == pytest.approx(3 * CFG.max_ee_step, abs=0.01)
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    obs, *_ = env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))  # > 0 closes
    assert obs["proprio"][3] < 0.1
    obs, *_ = env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    assert obs["proprio"][3] > 0.9
    # the workspace bounds hold however hard the policy pushes
    for _ in range(12):
        obs, *_ = env.step(np.array([0.0, 0.0, -1.0, -1.0], np.float32))
    assert obs["proprio"][2] >= CFG.workspace_low[2] - 0.005


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([np.nan, 0, 0, 0], np.float32), r"non-finite values at index \[0\]"),
        (np.array([0, 0, np.inf, -np.inf]), r"non-finite values at index \[2, 3\]"),
        (np.zeros(3, np.float32), r"shape \(3,\); expected \(4,\)"),
        (np.zeros((1, 4), np.float32), r"shape \(1, 4\); expected \(4,\)"),
        (np.array(["a", "b", "c", "d"]), r"dtype <U1"),
        (np.ones(4, bool), r"dtype bool"),
        ([0.0, [1.0, 2.0], 0.0, 0.0], r"not an array of 4 numbers|dtype object"),
        (None, r"dtype object"),
    ],
)
def test_invalid_actions_raise_and_leave_the_simulation_unchanged(env, action, match):
    env.reset(seed=3)
    env.step(np.array([0.3, -0.2, -0.5, 1.0], np.float32))
    before = env.unwrapped.qpos()
    mocap = env.unwrapped.data.mocap_pos.copy()
    ctrl = env.unwrapped.data.ctrl.copy()
    time = env.unwrapped.data.time
    with pytest.raises(InvalidActionError, match=match):
        env.step(action)
    assert np.array_equal(env.unwrapped.qpos(), before)
    assert np.array_equal(env.unwrapped.data.mocap_pos, mocap)
    assert np.array_equal(env.unwrapped.data.ctrl, ctrl)
    assert env.unwrapped.data.time == time
    assert issubclass(InvalidActionError, ValueError)


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    env = make_env(CFG, task="vase_forward", seed=0)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_out_of_range_actions_are_clipped_not_rejected(env):
    env.reset(seed=4)
    a, *_ = env.step(np.array([5.0, 0, 0, 0], np.float32))
    env.reset(seed=4)
    b, *_ = env.step(np.array([1.0, 0, 0, 0], np.float32))
    assert np.allclose(a["proprio"], b["proprio"])


def test_set_task_switches_the_instruction_without_touching_the_scene(env):
    env.reset(seed=5, options={"task": "bench_forward"})
    env.step(np.array([0.5, 0.5, 0.0, 0.0], np.float32))
    before = env.unwrapped.qpos()
    env.set_task("bench_reset")
    assert np.array_equal(env.unwrapped.qpos(), before)
    assert env.task.name == "bench_reset"
    _, _, _, _, info = env.step(np.zeros(4, np.float32))
    assert info["task"] == "bench_reset"
    assert info["language"] == "put the bench back in the centre of the table"
    with pytest.raises(KeyError, match="unknown task"):
        env.set_task("no_such_task")
    assert env.task.name == "bench_reset"


@pytest.mark.parametrize("task", ["vase_forward", "dumbbell_reset", "prior_mug_centre"])
def test_reset_draws_the_object_at_the_task_source_with_jitter(env, task):
    positions = []
    for seed in range(3):
        env.reset(seed=seed, options={"task": task})
        t = env.task
        xyz = env.unwrapped.object_position(t.obj)
        place = PLACES[t.source]
        assert place.contains(xyz[0], xyz[1])
        assert xyz[2] == pytest.approx(place.floor, abs=0.01)
        assert env.unwrapped.in_scene(t.obj)
        assert sum(env.unwrapped.in_scene(o) for o in OBJECTS) == 1  # no distractors
        assert not env.unwrapped.is_success()
        positions.append(xyz)
    assert not np.allclose(positions[0], positions[1])


def test_success_needs_the_object_at_rest_in_the_destination(env):
    env.reset(seed=6, options={"task": "vase_reset"})
    u = env.unwrapped
    assert not u.is_success()
    # the vase's source (its correct bin) is the destination of the forward task
    assert u.is_success("vase_forward")
    assert not u.is_success("bench_forward")  # the bench is not in the scene


def test_same_seed_same_rollout_different_seed_different_start():
    actions = np.random.default_rng(0).uniform(-1, 1, size=(6, 4)).astype(np.float32)
    runs = []
    for seed in (11, 11, 12):
        env = make_env(CFG, task="bench_forward", seed=seed)
        obs, _ = env.reset()
        frames, proprio = [obs["image"]], [obs["proprio"]]
        for a in actions:
            obs, *_ = env.step(a)
            frames.append(obs["image"])
            proprio.append(obs["proprio"])
        runs.append((np.stack(frames), np.stack(proprio)))
        env.close()
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1][0], runs[2][1][0])


@pytest.mark.parametrize("size", [64, 48])
def test_image_size_variants(size):
    env = make_env(dataclasses.replace(CFG, image_size=size), task="vase_forward", seed=0)
    try:
        obs, _ = env.reset()
        assert obs["image"].shape == (size, size, 3)
        obs, *_ = env.step(np.zeros(4, np.float32))
        assert obs["image"].shape == (size, size, 3)
        assert obs["image"].std() > 5  # a real picture, not a blank buffer
        assert np.array_equal(env.render(), obs["image"])
    finally:
        env.close()


def test_scene_variation_changes_pixels_and_adds_distractors():
    plain = make_env(CFG, task="vase_forward", seed=0)
    varied_cfg = dataclasses.replace(
        CFG, scene=SceneVariation(lighting=0.3, camera_jitter=0.03, distractors=2)
    )
    varied = make_env(varied_cfg, task="vase_forward", seed=0)
    try:
        a, _ = plain.reset(seed=7)
        b, _ = varied.reset(seed=7)
        assert np.abs(a["image"].astype(int) - b["image"].astype(int)).mean() > 2
        assert sum(varied.unwrapped.in_scene(o) for o in OBJECTS) == 3
        c, _ = varied.reset(seed=8)
        assert not np.array_equal(b["image"], c["image"])
        # variation is redrawn, never accumulated: the plain env is unaffected by its twin
        a2, _ = plain.reset(seed=7)
        assert np.array_equal(a["image"], a2["image"])
    finally:
        plain.close()
        varied.close()


def test_object_colour_variation_recolours_the_objects_only_and_is_redrawn():
    varied = make_env(
        dataclasses.replace(CFG, scene=SceneVariation(object_color=0.4)), "vase_forward", 0
    )
    plain = make_env(CFG, task="vase_forward", seed=0)
    try:
        model = varied.unwrapped.model
        vase = np.flatnonzero(model.geom_bodyid == model.body("obj_vase").id)
        table = model.geom("table").id
        default = plain.unwrapped.model.geom_rgba
        varied.reset(seed=3)
        first = model.geom_rgba[vase].copy()
        assert np.abs(first - default[vase]).max() > 0.01
        assert np.all(first[:, :3] <= 1) and np.all(first[:, 3] == default[vase][:, 3])
        assert np.array_equal(model.geom_rgba[table], default[table])
        varied.reset(seed=4)
        assert not np.allclose(model.geom_rgba[vase], first)  # a new draw, not accumulated
        ratio = model.geom_rgba[vase, :3] / np.maximum(default[vase, :3], 1e-6)
        assert np.all((ratio > 0.6 - 1e-6) | (default[vase, :3] < 1e-6))
    finally:
        varied.close()
        plain.close()


def test_wrist_rotation_action_and_bad_action_dim():
    env = make_env(dataclasses.replace(CFG, action_dim=5), task="vase_forward", seed=0)
    try:
        env.reset()
        obs, *_ = env.step(np.array([0, 0, 0, 1.0, -1.0], np.float32))
        assert obs["proprio"].shape == (4,)
        quat = env.unwrapped.data.mocap_quat[0]
        assert 2 * np.arctan2(quat[3], quat[0]) == pytest.approx(CFG.max_yaw_step, abs=1e-6)
        with pytest.raises(InvalidActionError, match=r"expected \(5,\)"):
            env.step(np.zeros(4, np.float32))
    finally:
        env.close()
    with pytest.raises(ValueError, match="action_dim must be 4 or 5"):
        make_env(dataclasses.replace(CFG, action_dim=7))


def test_close_is_idempotent_and_the_real_robot_is_not_built_here():
    env = make_env(CFG, seed=0)
    env.reset()
    env.close()
    env.close()
    with pytest.raises(ValueError, match="simulated tabletop"):
        make_env(dataclasses.replace(CFG, kind="widowx"))


def test_unstable_physics_redraws_a_valid_scene_instead_of_continuing(env, caplog):
    env.reset(seed=9, options={"task": "vase_forward"})
    u = env.unwrapped
    before = u.recoveries
    v = u._obj_vadr["vase"]
    u.data.qvel[v : v + 3] = 1e12  # what a blow-up looks like to MuJoCo
    obs, reward, _, _, info = env.step(np.zeros(4, np.float32))
    assert reward == 0.0
    assert u.recoveries == before + 1
    assert "unstable" in caplog.text
    xyz = u.object_position("vase")
    assert PLACES["centre"].contains(xyz[0], xyz[1]) and abs(xyz[2]) < 0.01
    assert env.observation_space.contains(obs) and info["task"] == "vase_forward"
    assert np.all(np.isfinite(u.qpos()))


def test_state_observation_appends_the_task_object_position():
    from robofume.config import ConfigError, load_config

    env = make_env(dataclasses.replace(CFG, observation="state"), task="bench_forward", seed=3)
    try:
        obs, _ = env.reset()
        assert obs["proprio"].shape == (7,) and env.observation_space.contains(obs)
        np.testing.assert_allclose(obs["proprio"][4:], env.object_position("bench"), atol=1e-6)
        obs, *_ = env.step(np.array([0, 0, -1, 0], np.float32))
        np.testing.assert_allclose(obs["proprio"][4:], env.object_position("bench"), atol=1e-6)
    finally:
        env.close()
    assert load_config("sim-state").network.proprio_dim == 7
    with pytest.raises(ConfigError, match="proprio_dim"):
        load_config("sim-state", overrides=["--network.proprio_dim", "4"])


def test_the_online_scene_shift_moves_the_start_and_scales_the_controller():
    from robofume.config import SceneShift
    from robofume.envs import online_env

    shifted = dataclasses.replace(
        CFG, online=SceneShift(start_offset=(0.05, -0.04), action_gain=0.5)
    )
    assert not shifted.shift.active  # the data's scene: no shift until online_env applies it
    base, moved = make_env(shifted, task="vase_forward"), make_env(online_env(shifted))
    try:
        for seed in range(3):
            base.reset(seed=seed, options={"task": "vase_forward"})
            moved.reset(seed=seed, options={"task": "vase_forward"})
            delta = np.subtract(moved.object_position("vase"), base.object_position("vase"))
            assert delta[:2] == pytest.approx((0.05, -0.04), abs=1e-3)
            # a reset task starts in the bin whatever the offset
            moved.reset(seed=seed, options={"task": "vase_reset"})
            assert PLACES["left_bin"].contains(*moved.object_position("vase")[:2])
        obs, _ = moved.reset(seed=5, options={"task": "vase_forward"})
        start = obs["proprio"][:3].copy()
        for _ in range(2):
            obs, *_ = moved.step(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
        assert obs["proprio"][0] - start[0] == pytest.approx(CFG.max_ee_step, abs=0.01)
    finally:
        base.close()
        moved.close()
