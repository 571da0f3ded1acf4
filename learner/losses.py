"""Cal-QL + BC losses as pure functions (no networks, no optimisers).

Notation: B = batch, N = sampled actions per state, E = critics (2), A = action size.
Q tensors are (E, B) for dataset actions and (E, B, N) for sampled actions; log-probs are
(B, N). Everything follows Cal-QL (Nakamoto et al., 2023) on top of CQL (Kumar et al., 2020):

    L_critic = sum_e  mean_b (Q_e(s,a) - y)^2                                  (TD)
             + cql_alpha * sum_e  mean_b [ T log sum_j exp(Q~_e(s, a_j) / T) - Q_e(s, a) ]
    y        = r + gamma (1 - d) [ min_e Q'_e(s', a') - alpha log pi(a'|s') ]   (entropy optional)
    Q~       = Q - log mu(a_j)      (importance sampling: uniform, pi(.|s), pi(.|s'))
    Cal-QL:  Q~ for the two policy-action sets uses max(Q, G) with G the Monte-Carlo return.
    L_actor  = mean_b [ alpha log pi(a~|s) - min_e Q_e(s, a~) ] / c + beta * mean_b [ BC ]
    c        = mean_b |min_e Q_e(s, a~)| (no gradient) when q-normalised (TD3+BC), else 1
    BC       = ||tanh(mu(s)) - a||^2 (mse, well defined at a = +-1) or -log pi(a|s) (nll)
    L_alpha  = - mean_b [ log alpha * (log pi(a~|s) + target_entropy) ]
"""

from __future__ import annotations

import math

import torch


def td_target(
    reward: torch.Tensor,
    terminal: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    discount: float,
    alpha: torch.Tensor | float = 0.0,
    backup_entropy: bool = False,
) -> torch.Tensor:
    """Bellman target y (B,), no gradient.

    reward, terminal: (B,); next_q: (E, B, N) target-critic values of N next-policy actions;
    next_log_prob: (B, N). The backup takes the min over critics, then (N > 1: Cal-QL's
    "max target backup") the best of the N actions.
    """
    q = next_q.min(dim=0).values  # (B, N)
    best = q.argmax(dim=1, keepdim=True)  # (B, 1)
    v = q.gather(1, best).squeeze(1)  # (B,)
    if backup_entropy:
        v = v - alpha * next_log_prob.gather(1, best).squeeze(1)
    return (reward + discount * (1.0 - terminal) * v).detach()


def critic_loss(q_data: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TD loss sum_e mean_b (Q_e(s,a) - y)^2; q_data (E, B), target (B,) -> scalar."""
    return (q_data - target.detach()[None]).square().mean(dim=1).sum()


def calibrated_lower_bound(
    q_policy: torch.Tensor, mc_return: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cal-QL: max(Q(s, a~), G(s, a)) for policy actions a~.

    q_policy: (E, B, N) Q of current- or next-policy actions at s; mc_return: (B,) the
    Monte-Carlo return of the dataset trajectory from s. Returns the bounded Q (E, B, N) and
    the bound rate: the fraction of entries where the bound was active (Q < G).
    """
    bound = mc_return[None, :, None].to(q_policy.dtype)  # (1, B, 1)
    rate = (q_policy < bound).float().mean()
    return torch.maximum(q_policy, bound), rate


def cql_penalty(
    q_data: torch.Tensor,
    q_random: torch.Tensor,
    q_current: torch.Tensor,
    log_prob_current: torch.Tensor,
    q_next: torch.Tensor,
    log_prob_next: torch.Tensor,
    action_dim: int,
    temperature: float = 1.0,
    importance_sample: bool = True,
) -> torch.Tensor:
    """CQL regulariser per critic: mean_b [ T logsumexp_j(Q~_j / T) - Q(s, a) ] -> (E,).

    q_data: (E, B) Q of dataset actions. q_random: (E, B, N) Q at s of actions uniform in
    [-1, 1]^A (density 0.5^A). q_current / q_next: (E, B, N) Q at s of actions drawn from
    pi(.|s) / pi(.|s') with log-probs (B, N) (already lower-bounded for Cal-QL; random actions
    never are). Importance sampling subtracts each proposal's log-density; without it, the
    plain CQL(H) set [random, data, next, current] is used.
    """
    if importance_sample:
        log_uniform = action_dim * math.log(0.5)
        cat = torch.cat(
            [
                q_random - log_uniform,
                q_next - log_prob_next.detach()[None],
                q_current - log_prob_current.detach()[None],
            ],
            dim=2,
        )  # (E, B, 3N)
    else:
        cat = torch.cat([q_random, q_data[:, :, None], q_next, q_current], dim=2)
    ood = torch.logsumexp(cat / temperature, dim=2) * temperature  # (E, B)
    return (ood - q_data).mean(dim=1)


def cql_lagrange_loss(
    log_cql_alpha: torch.Tensor, cql_diff: torch.Tensor, target_gap: float, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lagrange-tuned CQL weight (CQL's alpha-prime).

    cql_diff: (E,) from ``cql_penalty``. Returns (the term added to the critic loss, the loss
    of the multiplier). The multiplier alpha' = clamp(exp(log_cql_alpha), 0, 1e6) grows while
    the gap exceeds ``target_gap`` and shrinks otherwise.
    """
    alpha_prime = log_cql_alpha.exp().clamp(0.0, 1e6)
    critic_term = (alpha_prime.detach() * weight * (cql_diff - target_gap)).sum()
    multiplier_loss = -(alpha_prime * weight * (cql_diff.detach() - target_gap)).sum() * 0.5
    return critic_term, multiplier_loss


def bc_term(
    log_prob_data: torch.Tensor | None = None,
    mean_action: torch.Tensor | None = None,
    data_action: torch.Tensor | None = None,
) -> torch.Tensor:
    """Behaviour cloning per sample (B,): -log pi(a|s) when given, else ||tanh(mu) - a||^2."""
    if log_prob_data is not None:
        return -log_prob_data
    if mean_action is None or data_action is None:
        raise ValueError("bc_term needs log_prob_data or (mean_action, data_action)")
    return (mean_action - data_action).square().sum(-1)


def actor_loss(
    q_policy: torch.Tensor,
    log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
    bc: torch.Tensor | None = None,
    bc_weight: float = 0.0,
    rl_weight: float = 1.0,
    normalize_q: bool = False,
    bc_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Policy loss; returns (total, rl part, bc part), all scalars.

    q_policy: (E, B) Q of the reparameterised policy action a~ ~ pi(.|s); log_prob: (B,)
    log pi(a~|s); bc: (B,) per-sample BC term (see ``bc_term``). total = rl_weight * mean(alpha
    log pi - min_e Q) / c + bc_weight * mean(bc), with c = mean |min_e Q| (detached) when
    ``normalize_q`` (TD3+BC's rule: the RL term stays of order one whatever the Q scale, so
    the BC weight keeps its meaning as Q values grow during training), else c = 1.
    bc_rows: (B,) 0/1 weights of the rows BC imitates (mean over those rows; none: all rows).
    """
    alpha = alpha.detach() if isinstance(alpha, torch.Tensor) else alpha
    q_min = q_policy.min(dim=0).values  # (B,)
    rl = (alpha * log_prob - q_min).mean()
    if normalize_q:
        rl = rl / q_min.abs().mean().detach().clamp_min(1e-6)
    if bc is None:
        bc_mean = torch.zeros_like(rl)
    elif bc_rows is None:
        bc_mean = bc.mean()
    else:
        bc_mean = (bc * bc_rows).sum() / bc_rows.sum().clamp_min(1.0)
    return rl_weight * rl + bc_weight * bc_mean, rl, bc_mean


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float):
    """Entropy temperature: -mean(log alpha * (log pi + target_entropy)); target = -|A|."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()
