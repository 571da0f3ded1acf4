"""The online evaluator: the newest policy's ground-truth success while it fine-tunes.

It puts together the actor's weights puller and the learner's evaluation, so it lives with the
services that compose the processes.

In simulation, `up` starts this beside the actors (``deploy.evaluator_every_s`` > 0). Like an
actor it pulls the newest weights from replay, checked against the deployment secret, but it
never writes to replay: what it sees never reaches training. Every ``evaluator_every_s`` it
rolls out each forward target task ``deploy.evaluator_episodes`` times, deterministically, on
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
    return [f"{obj}_forward" for obj in cfg.data.target_tasks]


def run_evaluator(cfg: ExperimentConfig, stop_event: threading.Event) -> dict[str, Any]:
    """Evaluate the newest policy every ``deploy.evaluator_every_s`` until ``stop_event``."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from actor.weights import WeightsPuller
    from learner.evaluate import episode_panel, evaluate_policy
    from robofume.auth import deployment_secret
    from robofume.policy import InferencePolicy
    from robofume.replay_client.errors import ReplayUnavailableError
    from robofume.replay_client.info import stats_client, table_stats
    from robofume.replay_client.weights import WeightsClient
    from robofume.status import write_status

    torch.set_num_threads(1)
    d = cfg.deploy
    policy = InferencePolicy(cfg, device="cpu", seed=0)
    weights = WeightsClient(d.replay_address, timeout_s=cfg.replay.rpc_timeout_s)
    puller = WeightsPuller(weights, policy, cfg.hash, deployment_secret(d), 1.0, d.replay_address)
    stats = stats_client(d.replay_address)
    writer = SummaryWriter(str(RunDir.of(cfg).tb("evaluator")))
    tasks = forward_tasks(cfg)
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
                evaluated = policy.version
                result = evaluate_policy(cfg, policy, tasks, d.evaluator_episodes, record=1)
                rates = {task: result.success_rate(task) for task in tasks}
                for task, rate in rates.items():
                    writer.add_scalar(tags.per_task(tags.EVAL_TRUE_SUCCESS, task), rate, env_steps)
                mean = float(np.mean(list(rates.values()))) if rates else 0.0
                writer.add_scalar(tags.EVAL_TRUE_SUCCESS_ALL_FORWARD, mean, env_steps)
                writer.add_scalar(tags.EVAL_POLICY_VERSION, evaluated, env_steps)
                panel = episode_panel(result)
                if panel is not None:
                    writer.add_image(tags.EVAL_PANEL, panel, env_steps, dataformats="HWC")
                writer.flush()
                done = {"evaluations": done["evaluations"] + 1,
                        "last": {"policy_version": evaluated, "env_steps": env_steps,
                                 "success": rates, "time": time.time()}}  # fmt: skip
                write_status(d.run_dir, "evaluator", {"state": "running", **done})
                log.info("evaluator: policy v%d at %d env steps: %s", evaluated, env_steps, rates)
            stop_event.wait(d.evaluator_every_s)
    finally:
        writer.close()
        write_status(d.run_dir, "evaluator", {"state": "stopped", **done})
    return done
