"""Policy evaluation in the simulator with ground-truth success, plus image panels.

Episodes end on ground-truth success or at ``env.max_episode_steps``. Initial states come from
fixed seeds (``EVAL_SEED`` + task and episode number), so two checkpoints are compared on the
same scenes and never on the seeds data generation uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robofume.config import ExperimentConfig
from robofume.logs import progress
from robofume.policy import InferencePolicy

log = logging.getLogger(__name__)

EVAL_SEED = 10_000_000
"""Seeds of the evaluation episodes (reported results)."""
VALIDATION_SEED = 20_000_000
"""Seeds of the validation episodes: choosing start checkpoints, thresholds and
hyper-parameters happens on these, never on the evaluation seeds."""
SEED_SPLITS = {"evaluation": EVAL_SEED, "validation": VALIDATION_SEED}


@dataclass
class EvalResult:
    """Per-task outcome of an evaluation."""

    success: dict[str, list[bool]] = field(default_factory=dict)
    """Ground-truth success of each episode, per task."""
    lengths: dict[str, list[int]] = field(default_factory=dict)
    """Steps of each episode, per task."""
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    """Recorded episodes (uint8 (T+1, H, W, 3)), the first few per task."""

    def success_rate(self, task: str) -> float:
        return float(np.mean(self.success[task])) if self.success.get(task) else 0.0

    @property
    def mean_success(self) -> float:
        return float(np.mean([self.success_rate(t) for t in self.success])) if self.success else 0

    def summary(self) -> dict:
        """JSON-ready: per-task success rate, episodes and mean length."""
        return {
            "mean_success_rate": self.mean_success,
            "tasks": {
                t: {
                    "success_rate": self.success_rate(t),
                    "episodes": len(self.success[t]),
                    "successes": int(np.sum(self.success[t])),
                    "mean_length": float(np.mean(self.lengths[t])),
                }
                for t in self.success
            },
        }


def default_eval_tasks(cfg: ExperimentConfig) -> list[str]:
    """The forward target tasks named by ``data.target_tasks``."""
    return [f"{obj}_forward" for obj in cfg.data.target_tasks]


def evaluate_policy(
    cfg: ExperimentConfig,
    policy: InferencePolicy,
    tasks: list[str],
    episodes: int,
    deterministic: bool = True,
    record: int = 1,
    seed: int = EVAL_SEED,
    show_progress: bool = False,
    online_scene: bool = False,
) -> EvalResult:
    """Roll out ``policy`` for ``episodes`` episodes of each task; record ``record`` per task.

    ``online_scene``: in the scene the actors run in (``env.online`` applied), not the one of
    the offline data.

    Uses the simulator's own episode loop (``robofume.envs.rollout.run_episodes``); episode k
    of a task resets with seed ``seed + 1000 * task_index(task) + k``.
    """
    from robofume.envs import make_env, online_env
    from robofume.envs.rollout import run_episodes
    from robofume.tasks import task_index

    result = EvalResult()
    if not tasks or episodes <= 0:
        return result

    def act(obs: dict, task_name: str) -> np.ndarray:
        return policy.act(obs, task_name, deterministic=deterministic)

    keep: bool | str = False if record <= 0 else ("first" if record == 1 else True)
    env_cfg = online_env(cfg.env) if online_scene else cfg.env
    env = make_env(env_cfg, task=tasks[0], seed=seed)
    try:
        for task in progress(tasks, desc="evaluate", unit="task", disable=not show_progress):
            episodes_out = run_episodes(
                env,
                act,
                task,
                episodes,
                cfg.env.max_episode_steps,
                seed=seed + 1000 * task_index(task),
                keep_frames=keep,
            )
            result.success[task] = [e.success for e in episodes_out]
            result.lengths[task] = [e.steps for e in episodes_out]
            recorded = [e.frames for e in episodes_out if e.frames is not None]
            result.frames[task] = recorded[:record]
    finally:
        env.close()
    return result


def _pick(n_total: int, n: int) -> list[int]:
    if n_total <= n:
        return list(range(n_total))
    return [round(i * (n_total - 1) / (n - 1)) for i in range(n)]


def episode_panel(result: EvalResult, frames_per_row: int = 8) -> np.ndarray | None:
    """uint8 (rows*S, frames_per_row*S, 3): one row per recorded episode, frames evenly spaced.

    A success is marked with a green bar under the row, a failure with a red one.
    """
    rows = []
    for task, recorded in result.frames.items():
        for i, episode in enumerate(recorded):
            picked = [episode[j] for j in _pick(len(episode), frames_per_row)]
            while len(picked) < frames_per_row:
                picked.append(np.zeros_like(episode[0]))
            row = np.concatenate(picked, axis=1)
            bar = np.zeros((max(2, row.shape[0] // 16), row.shape[1], 3), np.uint8)
            bar[..., 1 if result.success[task][i] else 0] = 255
            rows.append(np.concatenate([row, bar], axis=0))
    if not rows:
        return None
    return np.concatenate(rows, axis=0)


def write_media(result: EvalResult, out_dir: str | Path, name: str = "evaluation") -> list[Path]:
    """Write ``<name>.png`` (the panel) and ``<name>.gif`` (first episodes side by side)."""
    import imageio.v2 as imageio

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    panel = episode_panel(result)
    if panel is not None:
        path = out_dir / f"{name}.png"
        imageio.imwrite(path, panel)
        written.append(path)
    firsts = [eps[0] for eps in result.frames.values() if eps]
    if firsts:
        length = max(len(f) for f in firsts)
        padded = [np.concatenate([f, np.repeat(f[-1:], length - len(f), 0)]) for f in firsts]
        movie = np.concatenate(padded, axis=2)  # tasks side by side
        path = out_dir / f"{name}.gif"
        imageio.mimsave(path, list(movie), duration=0.2, loop=0)
        written.append(path)
    return written
