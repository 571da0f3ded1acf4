"""Torch/OpenMP threads sized to each process's share of the machine's cores.

By default every torch process starts one math thread per core. On a small machine the
processes `make up` runs side by side (learner, simulated actors, reward replicas) then
oversubscribe the cores: OpenMP threads spin at barriers waiting for a thread that another
process has descheduled, and a learner at ~7 updates/s alone fell to ~0.8/s next to the
others (DESIGN.md section 6). Each process therefore sizes its threads to its share:

- ``learner``, ``actor``, ``reward`` (the components `up` co-locates): ``cores // n``, where n
  is the number of such processes the preset runs (1 learner + ``deploy.num_actors`` +
  ``deploy.num_reward_replicas``);
- ``alone`` (pre-training, reward fine-tuning, evaluation: one-shot steps that `up` runs one
  at a time before the cluster): all cores;
- ``generate`` (dataset generation): ``cores // data.workers`` for each worker process.

At least one thread each. ``deploy.torch_threads`` sets one number for every process instead,
and ``actor.policy_threads`` / ``reward.torch_threads`` set the actor's and a replica's.
``cores`` is ``deploy.ray_num_cpus`` when set, else the CPUs this process may run on.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

from robofume.config import ExperimentConfig

log = logging.getLogger(__name__)

Role = Literal["learner", "actor", "reward", "alone", "generate"]
COLOCATED: tuple[Role, ...] = ("learner", "actor", "reward")

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Variables the math libraries read when they start (child processes inherit them)."""


def machine_cores(cfg: ExperimentConfig) -> int:
    """Cores this machine gives robofume: ``deploy.ray_num_cpus``, else this process's CPUs."""
    if cfg.deploy.ray_num_cpus > 0:
        return cfg.deploy.ray_num_cpus
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def colocated_processes(cfg: ExperimentConfig) -> int:
    """Compute-heavy processes `up` runs side by side: learner, actors, reward replicas."""
    return 1 + cfg.deploy.num_actors + cfg.deploy.num_reward_replicas


def thread_share(cfg: ExperimentConfig, role: Role) -> int:
    """Threads for a process of ``role`` (see the module docstring)."""
    if role not in (*COLOCATED, "alone", "generate"):
        raise ValueError(f"unknown role {role!r}; known: {[*COLOCATED, 'alone', 'generate']}")
    if role == "actor" and cfg.actor.policy_threads > 0:
        return cfg.actor.policy_threads
    if role == "reward" and cfg.reward.torch_threads > 0:
        return cfg.reward.torch_threads
    if cfg.deploy.torch_threads > 0:
        return cfg.deploy.torch_threads
    cores = machine_cores(cfg)
    if role in COLOCATED:
        return max(1, cores // colocated_processes(cfg))
    if role == "generate":
        return max(1, cores // max(1, cfg.data.workers))
    return max(1, cores)  # alone


def set_threads(threads: int) -> int:
    """Use ``threads`` math threads here and in processes started from here; returns it.

    Sets the OpenMP/MKL variables (read when a library starts, so they also size torch
    imported later and spawned workers) and, when torch is loaded, ``torch.set_num_threads``.
    """
    threads = max(1, int(threads))
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def size_threads(cfg: ExperimentConfig, role: Role) -> int:
    """:func:`set_threads` to this process's :func:`thread_share`; logs and returns it.

    Loads torch first (except for ``generate``, whose parent needs none: its workers read the
    variables), so the setting holds even where a math library started before.
    """
    threads = thread_share(cfg, role)
    if role != "generate":
        import torch  # noqa: F401 - set_threads sizes it

    threads = set_threads(threads)
    log.debug("threads: %d for %s (%d cores)", threads, role, machine_cores(cfg))
    return threads
