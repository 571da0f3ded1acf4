"""Monte-Carlo returns for Cal-QL's calibration bound.

Convention (shared by demos, failures and online episodes):

* Rewards are sparse: ``r_t = 1.0`` when the observation after step t shows success, else 0.
* ``terminals[t]`` is true only at the last step of an episode that ended on success; nothing
  is bootstrapped past it.
* ``G_t = r_t + discount * (1 - terminal_t) * G_{t+1}``, and the return after the last step of
  the episode is 0, whether it ended on success, on the step limit (timeout) or was cut short.

Consequences: an episode that never succeeded has all returns 0, which is a valid lower bound
on the true value because rewards are never negative (Cal-QL only needs a lower bound). A
successful demo of T steps whose only reward is at the last step has ``G_t = discount**(T-1-t)``.
A demo that keeps going for a few "hold" steps after success collects one reward per success
frame, so its returns are the discounted sum of those rewards. A terminal in the middle of an
array (two episodes concatenated) stops rewards after it from propagating back past it.
"""

from __future__ import annotations

import numpy as np

from robofume.types import Episode


def mc_returns(rewards: np.ndarray, terminals: np.ndarray, discount: float) -> np.ndarray:
    """Discounted reward-to-go of one episode: ``G_t = r_t + discount*(1-terminal_t)*G_{t+1}``.

    Args:
        rewards: float (T,) per-step rewards (sparse {0, 1} in robofume; any finite values work).
        terminals: bool (T,) true where the episode ended on success.
        discount: in [0, 1].

    Returns:
        float32 (T,) returns; the return after the last step is taken as 0 (see module doc).

    Example: rewards [0, 0, 1], terminals [F, F, T], discount 0.9 -> [0.81, 0.9, 1.0].
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    terminals = np.asarray(terminals)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {rewards.shape}")
    if terminals.shape != rewards.shape:
        raise ValueError(
            f"terminals shape {terminals.shape} does not match rewards shape {rewards.shape}"
        )
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount}")
    if not np.all(np.isfinite(rewards)):
        raise ValueError("rewards contain NaN or inf")
    out = np.zeros_like(rewards)
    running = 0.0
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + discount * (0.0 if terminals[t] else running)
        out[t] = running
    return out.astype(np.float32)


def with_mc_returns(episode: Episode, discount: float) -> Episode:
    """Fill ``episode.mc_returns`` in place (and return the episode, for chaining)."""
    episode.mc_returns = mc_returns(episode.rewards, episode.terminals, discount)
    return episode
