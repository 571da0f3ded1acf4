"""Offline pre-training: dataset -> OfflineBuffer -> Learner, with logs, evaluation, checkpoints.

Resuming: when ``<out>/checkpoints`` holds a checkpoint, training continues from the newest
one (networks, optimisers, update counter, learner and sampler RNG, numpy/torch global RNG),
giving the same numbers as an uninterrupted run with the same config on the CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from learner.buffer import OfflineBuffer
from learner.checkpoint import checkpoint_path, latest_checkpoint, prune_checkpoints
from learner.data import load_pretrain_episodes
from learner.learner import Learner
from robofume import metrics as tags
from robofume.config import ExperimentConfig, save_config
from robofume.logs import progress
from robofume.run_dir import RunDir
from robofume.tasks import task_table

log = logging.getLogger(__name__)

METRIC_TAGS = {
    "critic_loss": tags.CRITIC_LOSS,
    "critic_total": tags.CRITIC_TOTAL,
    "cql_penalty": tags.CQL_PENALTY,
    "calql_bound_rate": tags.CALQL_BOUND_RATE,
    "actor_loss": tags.ACTOR_LOSS,
    "actor_rl_loss": tags.ACTOR_RL_LOSS,
    "bc_loss": tags.BC_LOSS,
    "alpha": tags.ALPHA,
    "alpha_loss": tags.ALPHA_LOSS,
    "cql_alpha": tags.CQL_ALPHA,
    "q_mean": tags.Q_MEAN,
    "target_mean": tags.TARGET_Q_MEAN,
    "entropy": tags.ENTROPY,
}


@dataclass
class PretrainResult:
    """What a pre-training run ended with."""

    steps: int
    checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    evaluations: dict[int, dict] = field(default_factory=dict)


def to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Metric tensors -> floats with a single device sync."""
    if not metrics:
        return {}
    keys = list(metrics)
    values = torch.stack([metrics[k].float().reshape(()) for k in keys]).tolist()
    return dict(zip(keys, values, strict=True))


def default_out_dir(cfg: ExperimentConfig) -> Path:
    return RunDir.of(cfg).pretrain


class _Writer:
    """TensorBoard writer created lazily (no event files for runs that fail validation)."""

    def __init__(self, log_dir: Path, purge_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(log_dir), purge_step=purge_step or None)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.tb.add_scalar(METRIC_TAGS.get(key, f"losses/{key}"), value, step)

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()


def _rng_state() -> dict:
    return {"numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        torch.set_rng_state(state["torch"])


def pretrain(
    cfg: ExperimentConfig,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    steps: int | None = None,
    episodes: list | None = None,
) -> PretrainResult:
    """Train for ``steps`` updates in total (``learner.steps`` by default), resuming if possible."""
    lc = cfg.learner
    steps = lc.steps if steps is None else steps
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    data_dir = Path(data_dir or cfg.data.dir)
    if episodes is None:
        episodes = load_pretrain_episodes(cfg, data_dir)  # validated before anything else
    np.random.seed(lc.seed)
    torch.manual_seed(lc.seed)
    learner = Learner(cfg)
    buffer = OfflineBuffer(
        episodes,
        lc.discount,
        learner.device,
        seed=lc.seed,
        target_fraction=lc.target_data_fraction,
        terminal_on_success=lc.terminal_on_success,
        task_index=task_table(cfg).index,
    )
    if cfg.network.normalize_proprio:  # a resumed checkpoint restores the same statistics
        learner.agent.set_proprio_statistics(*buffer.proprio_statistics())
    learner.batch_source = lambda: buffer.sample(lc.batch_size)
    ckpt_dir = out / "checkpoints"
    last_good = latest_checkpoint(ckpt_dir)
    if last_good is not None:
        extra = learner.restore(last_good)
        buffer.load_state_dict(extra["sampler"])
        _set_rng_state(extra.get("rng", {}))
        log.info("resuming from %s (update %d)", last_good, learner.num_updates)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    log.info(
        "pre-training %s on %s: %d transitions (%.0f MB on %s), %d updates, out %s",
        lc.algorithm,
        data_dir,
        len(buffer),
        buffer.nbytes / 1e6,
        learner.device,
        steps,
        out,
    )
    result = PretrainResult(learner.num_updates, last_good)
    if learner.num_updates >= steps:
        log.info("already at update %d >= %d: nothing to do", learner.num_updates, steps)
        return result
    # inside an `up` session its run sits beside the other components'; by hand, in ``out``
    tb_dir = RunDir.of(cfg).tb("pretrain") if cfg.deploy.session else out / "tb"
    writer = _Writer(tb_dir, learner.num_updates)
    bar = progress(total=steps, initial=learner.num_updates, desc=f"pretrain {lc.algorithm}")
    tick, tick_step = time.perf_counter(), learner.num_updates
    try:
        while learner.num_updates < steps:
            metrics = learner.step()
            step = learner.num_updates
            bar.update(1)
            if step % lc.log_every == 0 or step == steps:
                learner.check_finite(str(last_good) if last_good else None)
                values = to_floats(metrics)
                now = time.perf_counter()
                values_rate = (step - tick_step) / max(now - tick, 1e-9)
                tick, tick_step = now, step
                writer.scalars(values, step)
                writer.tb.add_scalar(tags.LEARNER_UPDATES_PER_SEC, values_rate, step)
                bar.set_postfix(
                    critic=f"{values.get('critic_loss', 0):.3g}",
                    bc=f"{values.get('bc_loss', 0):.3g}",
                    refresh=False,
                )
                result.metrics = values
            if lc.checkpoint_every and (step % lc.checkpoint_every == 0 or step == steps):
                learner.check_finite(str(last_good) if last_good else None)
                extra = {"sampler": buffer.state_dict(), "rng": _rng_state()}
                last_good = learner.save(checkpoint_path(ckpt_dir, step), extra)
                prune_checkpoints(ckpt_dir, lc.checkpoint_keep)
                result.checkpoint = last_good
            if lc.eval_every and step % lc.eval_every == 0:
                result.evaluations[step] = _evaluate(cfg, learner, writer, step, out)
    finally:
        bar.close()
        writer.close()
    result.steps = learner.num_updates
    return result


def _evaluate(cfg: ExperimentConfig, learner: Learner, writer: _Writer, step: int, out: Path):
    """Roll out the current policy on the forward target tasks; log rates and a panel."""
    from learner.evaluate import default_eval_tasks, episode_panel, evaluate_policy
    from robofume.policy import InferencePolicy

    policy = InferencePolicy(cfg, seed=cfg.learner.seed)
    policy.load_variables(learner.get_variables(), step)
    tasks = default_eval_tasks(cfg)
    result = evaluate_policy(cfg, policy, tasks, cfg.learner.eval_episodes, record=1)
    for task in tasks:
        tag = tags.per_task(tags.EVAL_SUCCESS_RATE, task)
        writer.tb.add_scalar(tag, result.success_rate(task), step)
    writer.tb.add_scalar(tags.EVAL_SUCCESS_RATE, result.mean_success, step)
    lengths = [n for task in tasks for n in result.lengths[task]]
    writer.tb.add_scalar(tags.EVAL_EPISODE_LENGTH, float(np.mean(lengths)), step)
    panel = episode_panel(result)
    if panel is not None:
        writer.tb.add_image(tags.EVAL_PANEL, panel, step, dataformats="HWC")
    summary = result.summary()
    log.info(
        "update %d: success %s",
        step,
        ", ".join(f"{t} {v['success_rate']:.2f}" for t, v in summary["tasks"].items()),
    )
    return summary
