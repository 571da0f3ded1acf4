"""Dataset generation and loading."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """Where the demos live and how many of each kind are generated in simulation."""

    dir: str = "data/sim"
    """Directory holding prior.hdf5, target.hdf5 and failures.hdf5."""
    prior_episodes_per_task: int = 10
    """Scripted demos per prior task."""
    num_prior_tasks: int = 20
    """How many of the prior pick-and-place tasks to generate demos for."""
    target_forward_episodes: int = 10
    """Forward demos per target task (D_f)."""
    target_reset_episodes: int = 10
    """Reset demos per target task (D_b)."""
    failure_episodes: int = 30
    """Failure rollouts (aborted or perturbed) whose frames are all 'no' for the classifier."""
    expert_noise: float = 0.1
    """Std of the Gaussian noise added to the scripted expert's actions."""
    hold_steps: int = 2
    """Extra steps a demo keeps going after success, so its last 3 frames show success."""
    target_tasks: tuple[str, ...] = ("vase", "bench", "dumbbell")
    """Target objects of the bin-sorting tasks (forward and reset task each)."""
    seed: int = 0
    """Seed of data generation."""
    failure_modes: tuple[str, ...] = ("aborted", "noisy", "dropped", "wrong_bin")
    """Kinds of failure rollout, drawn in turn (``robofume.data.rollouts.FAILURE_MODES``);
    ``held`` (carried to the place, never let go) and ``near_place`` are opt-in."""
    failure_noise: float = 1.0
    """Std of the expert's action noise in the 'noisy' failure rollouts."""
    max_attempts: int = 20
    """Rollouts tried per kept episode before generation gives up on that task."""
    workers: int = 2
    """Worker processes for generation (1 = in the calling process)."""
