"""The scripted expert solves the target tasks, including reset-free forward -> reset chains."""

from __future__ import annotations

import numpy as np
import pytest

from robofume.config import EnvConfig
from robofume.envs import ScriptedExpert, make_env
from robofume.tasks import get_task, prior_task_names, target_task_names

CFG = EnvConfig(image_size=32)
MAX_STEPS = 60


@pytest.fixture(scope="module")
def env():
    env = make_env(CFG, task="vase_forward", seed=0)
    yield env
    env.close()


def run_until_success(env, expert, obs, max_steps=MAX_STEPS):
    for step in range(1, max_steps + 1):
        obs, reward, _, _, info = env.step(expert.act(obs))
        if info["success"]:
            assert reward == 1.0
            return obs, step
    return obs, None


@pytest.mark.parametrize("task", target_task_names())
def test_expert_without_noise_solves_every_target_task(env, task):
    expert = ScriptedExpert(env, noise=0.0, seed=0)
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed, options={"task": task})
        expert.reset()
        _, steps = run_until_success(env, expert, obs)
        assert steps is not None, f"{task} seed {seed}: no success, expert in {expert.phase}"
        assert env.unwrapped.touching_fingers(get_task(task).obj) == 0  # released


@pytest.mark.parametrize("obj", ["vase", "bench", "dumbbell"])
def test_reset_free_forward_then_reset_without_env_reset(env, obj):
    expert = ScriptedExpert(env, noise=0.1, seed=3)
    obs, _ = env.reset(seed=10, options={"task": f"{obj}_forward"})
    expert.reset()
    obs, steps = run_until_success(env, expert, obs)
    assert steps is not None, f"{obj}_forward failed ({expert.phase})"
    env.set_task(f"{obj}_reset")
    assert not env.unwrapped.is_success()  # the object is in the bin, not yet back
    expert.reset()
    obs, steps = run_until_success(env, expert, obs)
    assert steps is not None, f"{obj}_reset after forward failed ({expert.phase})"
    # and forward again from where the reset task ended
    env.set_task(f"{obj}_forward")
    expert.reset()
    _, steps = run_until_success(env, expert, obs)
    assert steps is not None


@pytest.mark.parametrize("task", prior_task_names()[::7])
def test_expert_solves_prior_tasks(env, task):
    expert = ScriptedExpert(env, noise=0.1, seed=1)
    obs, _ = env.reset(seed=2, options={"task": task})
    expert.reset()
    _, steps = run_until_success(env, expert, obs)
    assert steps is not None, f"{task}: no success ({expert.phase})"


def test_expert_actions_are_valid_and_noise_is_seeded(env):
    obs, _ = env.reset(seed=0, options={"task": "vase_forward"})
    a = ScriptedExpert(env, noise=0.5, seed=7).act(obs)
    b = ScriptedExpert(env, noise=0.5, seed=7).act(obs)
    c = ScriptedExpert(env, noise=0.0, seed=7).act(obs)
    assert a.dtype == np.float32 and a.shape == (4,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.abs(a) <= 1.0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        ScriptedExpert(env, noise=-0.1)


def test_expert_recovers_from_a_dropped_object(env):
    """Forcing the gripper open mid-carry drops the object; the expert picks it up again."""
    expert = ScriptedExpert(env, noise=0.0, seed=0)
    obs, _ = env.reset(seed=4, options={"task": "bench_forward"})
    expert.reset()
    while expert.phase != "carry":
        obs, *_ = env.step(expert.act(obs))
    for _ in range(2):
        obs, *_ = env.step(np.array([0, 0, 0, -1.0], np.float32))  # let go
    _, steps = run_until_success(env, expert, obs, max_steps=80)
    assert steps is not None, f"no recovery ({expert.phase})"


@pytest.mark.parametrize("task", ["vase_forward", "dumbbell_reset"])
def test_held_failure_carries_the_object_to_its_place_and_never_lets_go(env, task):
    """The ``held`` failure mode: the object hangs in the closed gripper over its place."""
    from robofume.data import rollouts
    from robofume.envs.layout import PLACES

    t = get_task(task)
    rollout, info = rollouts.failure(env, t, 3, "held", 0.1, 1.0, 150, ScriptedExpert)
    u = env.unwrapped
    x, y, _z = u.object_position(t.obj)
    assert info == {"failure_mode": "held", "held_over": t.destination}
    assert rollouts.is_failure(rollout)  # never a success frame: it is never let go
    assert PLACES[t.destination].contains(x, y)  # ... though it is over its place
    assert u.touching_fingers(t.obj) == 2
    assert all(a[-1] > 0 for a in rollout.actions[-rollouts.HELD_STEPS :])


def test_near_place_failure_puts_the_object_on_a_neighbouring_place(env):
    """The ``near_place`` failure mode: the object ends at rest on a place next to its own."""
    from robofume.data import rollouts
    from robofume.envs.layout import PLACES

    t = get_task("vase_reset")
    rollout, info = rollouts.failure(env, t, 0, "near_place", 0.1, 1.0, 150, ScriptedExpert)
    x, y, _z = env.unwrapped.object_position(t.obj)
    assert info["put_in"] in ("plate", "mat") and PLACES[info["put_in"]].contains(x, y)
    assert rollouts.is_failure(rollout) and not PLACES[t.destination].contains(x, y)
