"""The Learner's update: gradient routing, algorithm switches, targets, variables for actors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from learner.finite import NonFiniteLossError
from learner.learner import Learner
from robofume.config import load_config
from robofume.policy import InferencePolicy
from robofume.tasks import task_names

N_TASKS = len(task_names())


def make_cfg(**learner):
    cfg = load_config("smoke")
    return cfg.replace(learner=dataclasses.replace(cfg.learner, device="cpu", **learner))


def make_batch(cfg, b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.env.image_size
    return {
        "image": torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, generator=g),
        "next_image": torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, generator=g),
        "proprio": torch.rand(b, 4, generator=g),
        "next_proprio": torch.rand(b, 4, generator=g),
        "task": torch.randint(0, N_TASKS, (b,), generator=g),
        "action": torch.rand(b, cfg.env.action_dim, generator=g) * 2 - 1,
        "reward": (torch.rand(b, generator=g) > 0.5).float(),
        "terminal": torch.zeros(b),
        "mc_return": torch.rand(b, generator=g),
    }


def onehot():
    return np.eye(N_TASKS, dtype=np.float32)


def grads(loss, params):
    return torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)


def test_actor_loss_gives_no_gradient_to_the_encoder():
    cfg = make_cfg()
    learner = Learner(cfg, task_table=onehot())
    graph, _ = learner.compute_losses(make_batch(cfg))
    enc = list(learner.agent.encoder.parameters())
    assert all(g is None for g in grads(graph["actor"], enc))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(graph["critic"], enc))
    # the critic loss does not reach the policy
    assert all(g is None for g in grads(graph["critic"], learner.agent.policy.parameters()))


def test_bc_trains_the_encoder_through_the_bc_loss_and_no_critic():
    cfg = make_cfg(algorithm="bc")
    learner = Learner(cfg, task_table=onehot())
    graph, metrics = learner.compute_losses(make_batch(cfg))
    assert graph["critic"] is None
    enc = list(learner.agent.encoder.parameters())
    assert all(g is not None for g in grads(graph["actor"], enc))
    assert metrics["actor_loss"].item() == pytest.approx(metrics["bc_loss"].item())
    critic_before = [p.clone() for p in learner.agent.critic.parameters()]
    learner.update(make_batch(cfg))
    after = list(learner.agent.critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(critic_before, after, strict=True))


@pytest.mark.parametrize(
    "algorithm, has_cql, has_bound, bc_in_actor",
    [
        ("robofume", True, True, True),
        ("robofume_nobc", True, True, False),
        ("cql", True, False, True),
        ("sac", False, False, True),
    ],
)
def test_algorithm_switches(algorithm, has_cql, has_bound, bc_in_actor):
    cfg = make_cfg(algorithm=algorithm)
    learner = Learner(cfg, task_table=onehot())
    batch = make_batch(cfg)
    metrics = learner.update(batch)
    assert ("cql_alpha" in metrics) == has_cql
    assert ("calql_bound_rate" in metrics) == has_bound
    assert (metrics["cql_penalty"].item() != 0.0) == has_cql
    rl, total, bc = (metrics[k].item() for k in ("actor_rl_loss", "actor_loss", "bc_loss"))
    expected = rl + (cfg.learner.bc_weight * bc if bc_in_actor else 0.0)
    assert total == pytest.approx(expected, rel=1e-5, abs=1e-6)
    learner.check_finite()
    assert learner.num_updates == 1


def test_targets_follow_by_polyak_averaging():
    cfg = make_cfg(tau=0.25)
    learner = Learner(cfg, task_table=onehot())
    a = learner.agent
    old_target = [p.clone() for p in a.target_critic.parameters()]
    learner.update(make_batch(cfg))
    for old, new, online in zip(
        old_target, a.target_critic.parameters(), a.critic.parameters(), strict=True
    ):
        assert torch.allclose(new, 0.75 * old + 0.25 * online, atol=1e-6)
    assert not any(p.requires_grad for p in a.target_encoder.parameters())


def test_lagrange_cql_weight_moves():
    cfg = make_cfg(cql_lagrange=True, cql_target_gap=100.0, cql_lagrange_lr=0.1)
    learner = Learner(cfg, task_table=onehot())
    first = learner.update(make_batch(cfg))["cql_alpha"].item()
    last = learner.update(make_batch(cfg, seed=1))["cql_alpha"].item()
    assert first == pytest.approx(cfg.learner.cql_alpha)
    assert last < first  # gap far below the target: the multiplier shrinks


def test_nan_loss_is_reported_with_step_and_terms():
    cfg = make_cfg()
    learner = Learner(cfg, task_table=onehot())
    learner.update(make_batch(cfg))
    bad = make_batch(cfg)
    bad["reward"][0] = float("nan")
    learner.update(bad)
    learner.update(make_batch(cfg))
    with pytest.raises(NonFiniteLossError, match="update 2: critic_loss") as err:
        learner.check_finite("runs/x/ckpt_1.pt")
    assert err.value.step == 2 and "ckpt_1.pt" in str(err.value)


def test_variables_load_into_the_inference_policy():
    cfg = make_cfg()
    learner = Learner(cfg, task_table=onehot())
    learner.update(make_batch(cfg))
    variables = learner.get_variables()
    assert set(variables) >= {"task_table", "encoder.proj.weight", "policy.net.0.weight"}
    assert not any(k.startswith(("critic", "target")) for k in variables)
    assert all(isinstance(v, np.ndarray) for v in variables.values())
    policy = InferencePolicy(cfg)
    with pytest.raises(RuntimeError, match="load_variables"):
        policy.act({}, "vase_forward")
    policy.load_variables(variables, version=3)
    assert policy.version == 3
    batch = make_batch(cfg, b=3, seed=5)
    expected = learner.act(batch, deterministic=True).numpy()
    for i in range(3):
        obs = {"image": batch["image"][i].numpy(), "proprio": batch["proprio"][i].numpy()}
        action = policy.act(obs, task_names()[int(batch["task"][i])], deterministic=True)
        assert action.shape == (cfg.env.action_dim,) and action.dtype == np.float32
        np.testing.assert_allclose(action, expected[i], atol=1e-5)
    sampled = policy.act(obs, "vase_forward")
    assert np.all(np.abs(sampled) <= 1.0)
    # variables of another image size are refused with the variable named
    other = cfg.replace(env=dataclasses.replace(cfg.env, image_size=48))
    with pytest.raises(ValueError, match=r"encoder\.proj\.weight"):
        InferencePolicy(other).load_variables(variables, 4)


def test_rewards_and_returns_are_scaled_inside_the_update():
    cfg = make_cfg(reward_scale=10.0)
    learner = Learner(cfg, task_table=onehot())
    batch = make_batch(cfg)
    batch["reward"][:] = 1.0
    batch["terminal"][:] = 1.0  # y = 10 * r, nothing bootstrapped
    batch["mc_return"][:] = 0.05  # scaled to 0.5: above every fresh Q (|Q| < 0.5 at init)
    _, metrics = learner.compute_losses(batch)
    assert metrics["target_mean"].item() == pytest.approx(10.0)
    assert metrics["calql_bound_rate"].item() == pytest.approx(1.0)
    batch["mc_return"][:] = -0.05  # scaled to -0.5: below every fresh Q
    _, metrics = learner.compute_losses(batch)
    assert metrics["calql_bound_rate"].item() == pytest.approx(0.0)
