"""The data types every process shares: observations, episodes and transitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EpisodeKind = Literal["prior", "target_forward", "target_reset", "failure", "online"]

BATCH_KEYS = (
    "image",
    "proprio",
    "task",
    "action",
    "reward",
    "terminal",
    "next_image",
    "next_proprio",
    "mc_return",
)
"""Keys of a learner batch (one transition per row), whether it comes from the offline data
or from the replay server: images uint8 (B,H,W,3), ``task`` int64 task ids, the rest float32."""

BC_ROWS = "bc_rows"
"""Optional batch key: (B,) float 0/1, the rows the BC term imitates (absent: every row). The
online learner sets it to the offline rows when ``learner.bc_on_online`` is off."""


def split_sizes(batch_size: int, ratio: float) -> tuple[int, int]:
    """(n_first, n_second) rows of a batch with a fraction ``ratio`` from the first source.

    The one definition of the learner's offline/online split (``learner.mixing_ratio``): the
    learner draws ``n_first`` offline and ``n_second`` online rows, and replay's rate limiter
    counts ``n_second`` samples per update.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mixing ratio must be in [0, 1], got {ratio}")
    n_first = round(batch_size * ratio)
    return n_first, batch_size - n_first


@dataclass
class Episode:
    """One trajectory of T steps.

    Observations have T+1 entries (the last is the observation after the final action);
    per-step arrays have T entries. ``rewards[t]``, ``terminals[t]`` and ``success[t]`` describe
    the transition (obs t, action t) -> obs t+1.
    """

    images: np.ndarray
    """uint8 (T+1, H, W, 3) camera frames."""
    proprio: np.ndarray
    """float32 (T+1, P) end-effector position and gripper opening."""
    actions: np.ndarray
    """float32 (T, A) actions in [-1, 1]."""
    rewards: np.ndarray
    """float32 (T,) sparse reward: 1 when obs t+1 shows success, else 0."""
    terminals: np.ndarray
    """bool (T,) true where the episode ended on success (no bootstrapping past it)."""
    success: np.ndarray
    """bool (T,) ground-truth success at obs t+1 (from the simulator; false when unknown)."""
    task: str
    """Task name, e.g. ``vase_forward``."""
    language: str
    """The task's instruction."""
    kind: EpisodeKind = "prior"
    """Where the episode came from."""
    mc_returns: np.ndarray | None = None
    """float32 (T,) Monte-Carlo returns, filled by ``robofume.data.returns``."""
    labels: np.ndarray | None = None
    """float32 (T,) reward model P(yes) at obs t+1 (online episodes only)."""
    meta: dict = field(default_factory=dict)
    """Free-form extras (seed, policy version, interventions ...)."""

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent array."""
        t = len(self)
        checks = {
            "images": (
                self.images.shape[:1] == (t + 1,)
                and self.images.ndim == 4
                and self.images.dtype == np.uint8
                and self.images.shape[-1] == 3
            ),
            "proprio": self.proprio.shape[:1] == (t + 1,) and self.proprio.ndim == 2,
            "actions": self.actions.ndim == 2,
            "rewards": self.rewards.shape == (t,),
            "terminals": self.terminals.shape == (t,),
            "success": self.success.shape == (t,),
        }
        for name, ok in checks.items():
            if not ok:
                arr = getattr(self, name)
                raise ValueError(
                    f"episode {self.task!r}: {name} has shape {arr.shape} dtype {arr.dtype}, "
                    f"inconsistent with {t} steps"
                )
        if not np.all(np.isfinite(self.actions)):
            raise ValueError(f"episode {self.task!r}: actions contain NaN or inf")
