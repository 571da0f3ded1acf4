"""The small privileged-state dataset the learning tests train on (vase, two prior tasks)."""

from __future__ import annotations

STATE_DATA = {
    "target_tasks": ["vase"],
    "num_prior_tasks": 2,
    "prior_episodes_per_task": 2,
    "target_forward_episodes": 10,
    "target_reset_episodes": 10,
    "failure_episodes": 0,
    "workers": 1,
}
"""``data`` overrides of ``sim-state``: a few seconds to generate, enough to solve the vase."""
