"""The online evaluator: the newest policy's ground-truth success while it fine-tunes.

It puts together the actor's weights puller and the learner's evaluation, so it lives with the
services that compose the processes.

In simulation, `up` starts this beside the actors (``deploy.evaluator_every_s`` > 0). Like an
actor it pulls the newest weights from replay, checked against the deployment secret, but it
never writes to replay: what it sees never reaches training. Every ``evaluator_every_s`` (or every
``evaluator_every_steps`` environment steps) it
rolls out each forward target task ``deploy.evaluator_episodes`` times, deterministically
(and, with ``deploy.evaluator_stochastic``, with sampled actions), in the online scene, on
the fixed evaluation seeds (:func:`learner.evaluate.evaluate_policy`), and writes to the
session's ``evaluator`` run:

- ``Headline/eval_true_success/<task>`` and ``.../all_forward_tasks`` against environment
  steps (transitions inserted into replay), the same axis as the actors';
- ``eval/policy_version`` (the learner update it evaluated) and one episode strip per task
  (``eval/panel``);
- a heartbeat, ``status/evaluator.json``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from robofume import metrics as tags
from robofume.config import ExperimentConfig
from robofume.run_dir import RunDir

log = logging.getLogger(__name__)


def forward_tasks(cfg: ExperimentConfig) -> list[str]:
    """``deploy.evaluator_tasks``, or every forward target task."""
    if cfg.deploy.evaluator_tasks:
        return list(cfg.deploy.evaluator_tasks)
    return [f"{obj}_forward" for obj in cfg.data.target_tasks]


class Schedule:
    """When to evaluate: every ``every_s`` seconds, or each time the environment steps in
    replay pass another multiple of ``every_steps`` (and at the first weights)."""

    def __init__(self, every_s: float, every_steps: int):
        self.every_s, self.every_steps = every_s, every_steps
        self.next_steps = 0

    @property
    def poll_s(self) -> float:
        return 2.0 if self.every_steps > 0 else self.every_s

    def due(self, env_steps: int) -> bool:
        if self.every_steps <= 0:
            return True
        return env_steps >= self.next_steps

    def done(self, env_steps: int) -> None:
        if self.every_steps > 0:
            self.next_steps = (env_steps // self.every_steps + 1) * self.every_steps


def run_evaluator(cfg: ExperimentConfig, stop_event: threading.Event) -> dict[str, Any]:
    """Evaluate the newest policy on the schedule of ``deploy.evaluator_every_steps`` or
    ``deploy.evaluator_every_s`` until ``stop_event``, in the online scene (``env.online``)."""
    import torch

    from robofume.auth import deployment_secret
    from robofume.config.base import hashed_values
    from robofume.policy import InferencePolicy
    from robofume.replay_client.errors import ReplayUnavailableError
    from robofume.replay_client.info import stats_client, table_stats
    from robofume.replay_client.weights import WeightsClient
    from robofume.status import write_status
    from robofume.telemetry import dashboard_writer
    from robofume.weights_puller import WeightsPuller

    torch.set_num_threads(1)
    d = cfg.deploy
    policy = InferencePolicy(cfg, device="cpu", seed=0)
    weights = WeightsClient(d.replay_address, timeout_s=cfg.replay.rpc_timeout_s)
    puller = WeightsPuller(
        weights, policy, cfg.hash, deployment_secret(d), 1.0, d.replay_address,
        config_values=hashed_values(cfg),
    )  # fmt: skip
    stats = stats_client(d.replay_address)
    writer = dashboard_writer(RunDir.of(cfg).tb("evaluator"))
    schedule = Schedule(d.evaluator_every_s, d.evaluator_every_steps)
    done: dict[str, Any] = {"evaluations": 0, "last": None}
    evaluated = -1
    try:
        while not stop_event.is_set():
            puller.check_once()
            if policy.version >= 0 and policy.version != evaluated:
                try:
                    env_steps = int(table_stats(stats, cfg.replay.rpc_timeout_s)["inserts"])
                except ReplayUnavailableError as err:
                    log.warning("evaluator: replay unavailable (%s); retrying", err)
                    stop_event.wait(5.0)
                    continue
                if schedule.due(env_steps):
                    evaluated = policy.version
                    schedule.done(env_steps)
                    last = evaluate_once(cfg, policy, writer, env_steps)
                    done = {"evaluations": done["evaluations"] + 1, "last": last}
                    write_status(d.run_dir, "evaluator", {"state": "running", **done})
            stop_event.wait(schedule.poll_s)
    finally:
        writer.close()
        write_status(d.run_dir, "evaluator", {"state": "stopped", **done})
    return done


def evaluate_once(cfg: ExperimentConfig, policy: Any, writer: Any, env_steps: int) -> dict:
    """One evaluation of ``policy`` (deterministic, and sampled with evaluator_stochastic) on
    the evaluation seeds of the online scene, written at ``env_steps``; returns the record."""
    from learner.evaluate import episode_panel, evaluate_policy

    d = cfg.deploy
    tasks = forward_tasks(cfg)
    modes = [(True, tags.EVAL_TRUE_SUCCESS, tags.EVAL_TRUE_SUCCESS_ALL_FORWARD)]
    if d.evaluator_stochastic:
        stochastic = tags.EVAL_TRUE_SUCCESS_STOCHASTIC
        modes.append((False, stochastic, tags.EVAL_TRUE_SUCCESS_STOCHASTIC_ALL_FORWARD))
    record: dict[str, Any] = {"policy_version": int(policy.version), "env_steps": env_steps}
    for deterministic, prefix, all_tag in modes:
        result = evaluate_policy(
            cfg,
            policy,
            tasks,
            d.evaluator_episodes,
            deterministic=deterministic,
            record=1 if deterministic else 0,
            online_scene=True,
        )
        rates = {task: result.success_rate(task) for task in tasks}
        for task, rate in rates.items():
            writer.add_scalar(tags.per_task(prefix, task), rate, env_steps)
        mean = float(np.mean(list(rates.values()))) if rates else 0.0
        writer.add_scalar(all_tag, mean, env_steps)
        record["success" if deterministic else "success_stochastic"] = rates
        panel = episode_panel(result) if deterministic else None
        if panel is not None:
            writer.add_image(tags.EVAL_PANEL, panel, env_steps, dataformats="HWC")
    writer.add_scalar(tags.EVAL_POLICY_VERSION, policy.version, env_steps)
    writer.flush()
    record["time"] = time.time()
    log.info("evaluator: policy v%d at %d env steps: %s", policy.version, env_steps,
             {k: v for k, v in record.items() if k.startswith("success")})  # fmt: skip
    return record
