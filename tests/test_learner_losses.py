"""Each Cal-QL / BC loss against numbers worked out by hand (tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch

from learner import losses
from robofume.networks import sample_tanh_gaussian, tanh_gaussian_log_prob

LN2 = math.log(2.0)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_td_target_min_over_critics_max_over_samples():
    # E=2 critics, B=2 states, N=2 next actions
    next_q = t([[[1.0, 3.0], [2.0, 0.0]], [[2.0, 2.5], [1.0, 5.0]]])
    # min over critics: [[1.0, 2.5], [1.0, 0.0]] -> max over samples: [2.5, 1.0] (index 1, 0)
    log_prob = t([[-1.0, -2.0], [-3.0, -4.0]])
    reward, terminal = t([1.0, 0.0]), t([0.0, 1.0])
    y = losses.td_target(reward, terminal, next_q, log_prob, discount=0.5)
    assert torch.allclose(y, t([1.0 + 0.5 * 2.5, 0.0]))
    # entropy backup: v - alpha * log pi of the chosen sample: 2.5 - 0.1 * (-2) = 2.7
    y = losses.td_target(reward, terminal, next_q, log_prob, 0.5, alpha=0.1, backup_entropy=True)
    assert torch.allclose(y, t([1.0 + 0.5 * 2.7, 0.0]))
    assert not y.requires_grad


def test_critic_loss_sums_critics_of_mean_squared_error():
    q = t([[1.0, 2.0], [0.0, 4.0]])  # (E=2, B=2)
    y = t([0.0, 3.0])
    # critic 0: ((1)^2 + (-1)^2)/2 = 1; critic 1: (0 + 1)/2 = 0.5
    assert losses.critic_loss(q, y).item() == pytest.approx(1.5)


def test_calibrated_lower_bound_and_rate():
    q = t([[[0.2, 0.8], [0.0, -1.0]], [[0.6, 0.4], [3.0, 2.0]]])  # (E=2, B=2, N=2)
    mc = t([0.5, 1.0])
    bounded, rate = losses.calibrated_lower_bound(q, mc)
    expected = t([[[0.5, 0.8], [1.0, 1.0]], [[0.6, 0.5], [3.0, 2.0]]])
    assert torch.allclose(bounded, expected)
    # entries below the bound: 0.2, 0.0, -1.0, 0.4 -> 4 of 8
    assert rate.item() == pytest.approx(0.5)


def test_cql_penalty_importance_sampled():
    # A=1: log density of the uniform proposal is ln 0.5 = -ln 2
    q_random = t([[[-LN2]]])  # -> q - ln0.5 = 0
    q_next, log_prob_next = t([[[0.0]]]), t([[0.0]])  # -> 0
    q_current, log_prob_current = t([[[LN2 + 1.0]]]), t([[1.0]])  # -> ln 2
    q_data = t([[math.log(4.0) - 1.0]])
    # logsumexp(0, 0, ln 2) = ln(1 + 1 + 2) = ln 4; minus Q(s, a) = ln4 - 1 -> 1
    diff = losses.cql_penalty(
        q_data, q_random, q_current, log_prob_current, q_next, log_prob_next, action_dim=1
    )
    assert diff.shape == (1,)
    assert diff.item() == pytest.approx(1.0, abs=1e-6)
    # temperature T=2: 2 * logsumexp(x / 2) = 2 ln(1 + 1 + sqrt 2)
    diff = losses.cql_penalty(
        q_data,
        q_random,
        q_current,
        log_prob_current,
        q_next,
        log_prob_next,
        action_dim=1,
        temperature=2.0,
    )
    expected = 2 * math.log(2 + math.sqrt(2)) - (math.log(4.0) - 1.0)
    assert diff.item() == pytest.approx(expected, abs=1e-6)


def test_cql_penalty_plain_set_includes_data_action():
    zeros = t([[[0.0]]])
    q_data = t([[0.0]])
    # logsumexp over [rand 0, data 0, next 0, current 0] = ln 4
    diff = losses.cql_penalty(
        q_data, zeros, zeros, t([[5.0]]), zeros, t([[7.0]]), 1, importance_sample=False
    )
    assert diff.item() == pytest.approx(math.log(4.0), abs=1e-6)


def test_cql_penalty_per_critic_mean_over_batch():
    # E=2, B=2, N=1, A=2 (log uniform = 2 ln 0.5); random terms dominate nothing here
    q_data = t([[1.0, 2.0], [0.0, 0.0]])
    big_neg = t([[[-100.0], [-100.0]], [[-100.0], [-100.0]]])
    q_cur = t([[[1.0], [2.0]], [[3.0], [4.0]]])
    lp = t([[0.0], [0.0]])
    diff = losses.cql_penalty(q_data, big_neg, q_cur, lp, big_neg, lp, action_dim=2)
    # only the current-action term survives: critic 0: (1-1 + 2-2)/2 = 0; critic 1: (3 + 4)/2
    assert torch.allclose(diff, t([0.0, 3.5]), atol=1e-5)


def test_cql_lagrange_multiplier():
    log_alpha = torch.zeros((), requires_grad=True)  # alpha' = 1
    diff = t([1.0, 0.5])  # gaps 0.2 and -0.3 around the target 0.8
    critic_term, multiplier_loss = losses.cql_lagrange_loss(log_alpha, diff, 0.8, weight=5.0)
    assert critic_term.item() == pytest.approx(5.0 * (0.2 - 0.3))
    assert multiplier_loss.item() == pytest.approx(-0.5 * 5.0 * (0.2 - 0.3))
    multiplier_loss.backward()
    # d/dlog(alpha) = -0.5 * 5 * (-0.1) = 0.25 > 0: gap below target -> alpha' shrinks
    assert log_alpha.grad.item() == pytest.approx(0.25)
    assert not critic_term.requires_grad  # the critic sees alpha' as a constant


def test_actor_loss_rl_and_bc_parts():
    q_pi = t([[1.0, 2.0], [0.5, 3.0]])  # min over critics -> [0.5, 2.0]
    log_prob = t([-1.0, 1.0])
    bc = t([2.0, 4.0])
    total, rl, bc_mean = losses.actor_loss(q_pi, log_prob, 0.1, bc, bc_weight=0.5)
    # rl = mean(0.1 * -1 - 0.5, 0.1 * 1 - 2.0) = mean(-0.6, -1.9) = -1.25
    assert rl.item() == pytest.approx(-1.25)
    assert bc_mean.item() == pytest.approx(3.0)
    assert total.item() == pytest.approx(-1.25 + 0.5 * 3.0)
    total, _, _ = losses.actor_loss(q_pi, log_prob, 0.1, bc, bc_weight=1.0, rl_weight=0.0)
    assert total.item() == pytest.approx(3.0)


def test_actor_loss_bc_imitates_only_the_given_rows():
    q_pi = t([[1.0, 2.0, 0.0], [0.5, 3.0, 0.0]])
    log_prob = t([-1.0, 1.0, 0.0])
    mean = t([0.0, 0.0, 0.0]).requires_grad_()
    bc = (mean - t([1.0, 3.0, 100.0])).square()  # the third row: the robot's own action
    rows = t([1.0, 1.0, 0.0])
    total, _, bc_mean = losses.actor_loss(q_pi, log_prob, 0.1, bc, bc_weight=1.0, bc_rows=rows)
    assert bc_mean.item() == pytest.approx((1.0 + 9.0) / 2)
    total.backward()
    assert mean.grad[2].item() == 0.0  # never pulled towards the unweighted row
    assert mean.grad[1].item() == pytest.approx(-3.0)  # d/dmu (mu - 3)^2 / 2 at 0
    _, _, none = losses.actor_loss(q_pi, log_prob, 0.1, bc.detach(), 1.0, bc_rows=rows * 0)
    assert none.item() == 0.0  # no rows to imitate: no BC, not NaN


def test_actor_loss_normalised_by_mean_abs_q():
    q_pi = t([[1.0, -2.0], [0.5, 3.0]]).requires_grad_()  # min -> [0.5, -2.0], mean |.| 1.25
    log_prob = t([-1.0, 1.0])
    bc = t([2.0, 4.0])
    total, rl, _ = losses.actor_loss(q_pi, log_prob, 0.1, bc, bc_weight=0.5, normalize_q=True)
    # rl = mean(-0.1 - 0.5, 0.1 + 2.0) / 1.25 = 0.75 / 1.25 = 0.6
    assert rl.item() == pytest.approx(0.6)
    assert total.item() == pytest.approx(0.6 + 0.5 * 3.0)
    total.backward()  # the scale is a constant: d rl / d Q_min = -1 / (B * 1.25)
    assert q_pi.grad[1, 0].item() == pytest.approx(-0.4)
    assert q_pi.grad[0, 1].item() == pytest.approx(-0.4)
    assert q_pi.grad[0, 0].item() == 0.0


def test_bc_terms():
    assert torch.allclose(losses.bc_term(log_prob_data=t([-1.0, 2.0])), t([1.0, -2.0]))
    mse = losses.bc_term(mean_action=t([[0.5, 0.0]]), data_action=t([[0.0, -1.0]]))
    assert torch.allclose(mse, t([0.25 + 1.0]))


def test_alpha_loss():
    log_alpha = torch.tensor(0.5, requires_grad=True)
    log_prob = t([-3.0, -5.0])
    loss = losses.alpha_loss(log_alpha, log_prob, target_entropy=-4.0)
    # -(0.5 * mean(-7, -9)) = 4
    assert loss.item() == pytest.approx(4.0)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(8.0)  # entropy above target: alpha shrinks


def test_tanh_gaussian_log_prob_by_hand():
    mean, log_std = torch.zeros(1, 2), torch.zeros(1, 2)
    # noise 0: a = 0, log pi = 2 * (-0.5 ln 2 pi) (no tanh correction at 0)
    a, lp = sample_tanh_gaussian(mean, log_std, torch.zeros(1, 2))
    assert torch.allclose(a, torch.zeros(1, 2))
    assert lp.item() == pytest.approx(-math.log(2 * math.pi), abs=1e-6)
    # noise 1 in one dim: u = 1, a = tanh 1; density -0.5 - 0.5 ln 2pi - ln(1 - tanh(1)^2)
    a, lp = sample_tanh_gaussian(mean, log_std, t([[1.0, 0.0]]))
    expected = (-0.5 - 0.5 * math.log(2 * math.pi)) - math.log(1 - math.tanh(1.0) ** 2)
    expected += -0.5 * math.log(2 * math.pi)
    assert a[0, 0].item() == pytest.approx(math.tanh(1.0))
    assert lp.item() == pytest.approx(expected, abs=1e-5)
    # the density of a given action agrees with the sampler's
    lp2 = tanh_gaussian_log_prob(mean, log_std, a)
    assert lp2.item() == pytest.approx(expected, abs=1e-4)
