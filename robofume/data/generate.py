"""``robofume generate``: the simulated dataset, written by the scripted expert.

Writes ``DIR/prior.hdf5`` (prior demos), ``DIR/target.hdf5`` (forward and reset demos of the
target tasks), ``DIR/failures.hdf5`` (failure rollouts) and, last, ``DIR/manifest.json``.

* Demos run the expert (``data.expert_noise``) until ground-truth success and then
  ``data.hold_steps`` more steps, so the last ``hold_steps + 1`` frames show success; rollouts
  that do not get there within ``env.max_episode_steps`` are retried with a new seed (counted).
* Reset demos are reset-free: the reset expert starts from the scene where a forward demo
  ended, without ``env.reset``. Both demos of a pair are kept.
* Failures cycle through ``data.failure_modes`` (of
  :data:`~robofume.data.rollouts.FAILURE_MODES`) over the target forward
  and reset tasks; only rollouts that never show success are kept.

The work is cut into jobs (one kept prior demo, one forward/reset pair, one failure) whose
seeds derive from ``data.seed`` and the job's identity only, so the output is the same for any
number of worker processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
import zlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robofume.config import ConfigError, ExperimentConfig
from robofume.config.base import to_dict
from robofume.data import rollouts
from robofume.data.errors import DatasetError
from robofume.data.hdf5_writer import DatasetWriter, check_target
from robofume.logs import progress

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_HASH_EXCLUDE = ("dir", "workers")  # data fields that do not change the content


class GenerationError(RuntimeError):
    """The expert could not produce a required episode within ``data.max_attempts`` tries."""


@dataclass(frozen=True)
class Job:
    """One unit of work: a prior demo, a forward/reset pair, or a failure rollout."""

    kind: str  # "prior" | "pair" | "failure"
    task: str  # prior task, forward task of the pair, or the failure's task
    index: int  # episode number within (kind, task)
    want_forward: bool = True
    want_reset: bool = False
    mode: str = ""  # failure mode


def job_seed(base: int, job: Job, attempt: int) -> int:
    """Deterministic seed of one attempt of a job (independent of scheduling)."""
    key = [base, zlib.crc32(job.kind.encode()), zlib.crc32(job.task.encode()), job.index, attempt]
    return int(np.random.SeedSequence(key).generate_state(1)[0] & 0x7FFFFFFF)


def data_hash(cfg: ExperimentConfig) -> str:
    """Hash of the env and data sections (what determines the dataset's content)."""
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in _HASH_EXCLUDE}
    blob = json.dumps({"env": to_dict(cfg.env), "data": data}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def plan_jobs(cfg: ExperimentConfig) -> list[Job]:
    """Every job of the dataset, in file order."""
    from robofume.tasks import get_task, prior_task_names

    d = cfg.data
    priors = prior_task_names()
    if d.num_prior_tasks > len(priors):
        raise ConfigError(f"data.num_prior_tasks={d.num_prior_tasks} > {len(priors)} prior tasks")
    jobs = [
        Job("prior", name, i)
        for name in priors[: d.num_prior_tasks]
        for i in range(d.prior_episodes_per_task)
    ]
    targets = []
    for obj in d.target_tasks:
        forward = get_task(f"{obj}_forward")
        targets += [forward.name, forward.pair]
        for i in range(max(d.target_forward_episodes, d.target_reset_episodes)):
            jobs.append(
                Job(
                    "pair",
                    forward.name,
                    i,
                    i < d.target_forward_episodes,
                    i < d.target_reset_episodes,
                )
            )
    modes = d.failure_modes
    unknown = sorted(set(modes) - set(rollouts.FAILURE_MODES))
    if unknown or not modes:
        raise ConfigError(
            f"data.failure_modes={list(modes)}: unknown {unknown or 'none given'}; "
            f"known: {list(rollouts.FAILURE_MODES)}"
        )
    for i in range(d.failure_episodes):  # every mode appears, tasks stay balanced
        jobs.append(Job("failure", targets[i % len(targets)], i, mode=modes[i % len(modes)]))
    return jobs


# -- worker side --------------------------------------------------------------------------

_ENV: Any = None
_CFG: ExperimentConfig | None = None
_INIT_ERROR: BaseException | None = None


def _init_worker(cfg: ExperimentConfig) -> None:
    """Create this process's environment (closed again when the process exits)."""
    global _ENV, _CFG, _INIT_ERROR
    from multiprocessing import util

    from robofume.envs import make_env
    from robofume.tasks import task_names

    _CFG, _INIT_ERROR = cfg, None
    try:
        _ENV = make_env(cfg.env, task=task_names()[0], seed=cfg.data.seed)
    except Exception as err:  # a raising Pool initializer would be restarted forever
        _INIT_ERROR = err
        return
    util.Finalize(None, _close_worker, exitpriority=10)


def _close_worker() -> None:
    global _ENV
    if _ENV is not None:
        _ENV.close()
        _ENV = None


def run_job(job: Job) -> dict[str, Any]:
    """Attempt a job until it yields its episodes; returns them with attempt statistics."""
    from robofume.envs import ScriptedExpert
    from robofume.tasks import get_task

    if _INIT_ERROR is not None:
        raise RuntimeError(f"could not create the environment: {_INIT_ERROR}") from _INIT_ERROR
    assert _CFG is not None and _ENV is not None, "worker not initialised"
    cfg, env = _CFG, _ENV
    d, steps = cfg.data, cfg.env.max_episode_steps
    task = get_task(job.task)
    stats: Counter[str] = Counter()
    for attempt in range(d.max_attempts):
        seed = job_seed(d.seed, job, attempt)
        meta = {"seed": seed, "attempt": attempt, "index": job.index}
        if job.kind == "prior":
            roll, _ = rollouts.demo(
                env, task, seed, d.expert_noise, steps, d.hold_steps, ScriptedExpert
            )
            ok = rollouts.is_demo(roll, d.hold_steps)
            stats[f"{task.name}/attempts"] += 1
            stats[f"{task.name}/successes"] += int(ok)
            if ok:
                return _result(
                    job, attempt, stats, [("prior", roll.to_episode(task, "prior", meta))]
                )
        elif job.kind == "pair":
            reset = get_task(task.pair)
            fwd, rst = rollouts.reset_free_pair(
                env,
                task,
                reset,
                seed,
                d.expert_noise,
                steps,
                d.hold_steps,
                ScriptedExpert,
                job.want_reset,
            )
            fwd_ok = rollouts.is_demo(fwd, d.hold_steps)
            stats[f"{task.name}/attempts"] += 1
            stats[f"{task.name}/successes"] += int(fwd_ok)
            if rst is not None:
                stats[f"{reset.name}/attempts"] += 1
                stats[f"{reset.name}/successes"] += int(rollouts.is_demo(rst, d.hold_steps))
            if fwd_ok and (not job.want_reset or rollouts.is_demo(rst, d.hold_steps)):
                out = []
                pair = {**meta, "pair": f"{task.name}/{job.index}"}
                if job.want_forward:
                    out.append(("target", fwd.to_episode(task, "target_forward", pair)))
                if job.want_reset:
                    rst_meta = {**pair, "starts_from": "end of the paired forward demo"}
                    out.append(("target", rst.to_episode(reset, "target_reset", rst_meta)))
                return _result(job, attempt, stats, out)
        else:
            # after every 5 rejected tries of its mode, a failure job moves on to the next mode
            modes = d.failure_modes
            mode = modes[(modes.index(job.mode) + attempt // 5) % len(modes)]
            roll, info = rollouts.failure(
                env, task, seed, mode, d.expert_noise, d.failure_noise, steps, ScriptedExpert
            )
            stats[f"failure_{mode}/attempts"] += 1
            stats[f"failure_{mode}/kept"] += int(rollouts.is_failure(roll))
            if rollouts.is_failure(roll):
                ep = roll.to_episode(task, "failure", {**meta, **info})
                return _result(job, attempt, stats, [("failures", ep)])
    hint = (
        "every perturbed rollout still succeeded; raise data.failure_noise or data.max_attempts"
        if job.kind == "failure"
        else "raise data.max_attempts or env.max_episode_steps, or lower data.expert_noise"
    )
    raise GenerationError(
        f"{job.kind} job for task {job.task!r} (episode {job.index}) failed "
        f"{d.max_attempts} attempts ({dict(stats)}): {hint}"
    )


def _result(job: Job, attempt: int, stats: Counter, episodes: list) -> dict[str, Any]:
    return {"job": job, "retries": attempt, "stats": dict(stats), "episodes": episodes}


# -- main side ----------------------------------------------------------------------------


def planned_episodes(jobs: list[Job]) -> dict[str, int]:
    """Episodes each file of the dataset will hold (``prior``, ``target``, ``failures``)."""
    return {
        "prior": sum(j.kind == "prior" for j in jobs),
        "target": sum(int(j.want_forward) + int(j.want_reset) for j in jobs if j.kind == "pair"),
        "failures": sum(j.kind == "failure" for j in jobs),
    }


def check_replaceable(out: Path, planned: dict[str, int], overwrite: bool) -> None:
    """Refuse, before any work, to replace an episode file with fewer episodes (or a file that
    is not a robofume episode file) unless ``overwrite``."""
    for key, n in planned.items():
        path = out / f"{key}.hdf5"
        existing = check_target(path, overwrite)
        if existing is not None and existing > n:
            raise DatasetError(
                path,
                f"holds {existing} episodes and this generation would replace it with {n}; "
                "pass --overwrite to replace it, or --out another directory",
            )


def generate_dataset(
    cfg: ExperimentConfig, out_dir: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Generate the simulated dataset into ``out_dir`` (default ``cfg.data.dir``).

    An existing episode file is replaced only by one with at least as many episodes, unless
    ``overwrite``; the check comes before any work.
    """
    out = Path(out_dir or cfg.data.dir)
    jobs = plan_jobs(cfg)
    if out.is_dir():
        check_replaceable(out, planned_episodes(jobs), overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # present only when complete
    workers = max(1, min(cfg.data.workers, len(jobs)))
    log.info("generating %d jobs into %s with %d worker(s)", len(jobs), out, workers)
    start = time.perf_counter()
    stats: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    counts: dict[str, Counter[str]] = {k: Counter() for k in ("prior", "target", "failures")}
    steps: Counter[str] = Counter()
    attrs = {"generator": "robofume generate", "config_hash": data_hash(cfg), "seed": cfg.data.seed}
    with ExitStack() as stack:
        # checked above: nothing is replaced by fewer episodes without ``overwrite``
        writers = {
            k: stack.enter_context(
                DatasetWriter(out / f"{k}.hdf5", {**attrs, "contents": k}, overwrite=True)
            )
            for k in counts
        }
        pool = None
        if workers == 1:
            _init_worker(cfg)
            stack.callback(_close_worker)
            results = map(run_job, jobs)
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ctx.Pool(workers, _init_worker, (cfg,)))
            results = pool.imap(run_job, jobs)
        for res in progress(results, total=len(jobs), desc="generate", unit="job"):
            stats.update(res["stats"])
            if res["retries"]:
                job = res["job"]
                retries[job.task] += res["retries"]
                log.info(
                    "%s %s #%d needed %d retries", job.kind, job.task, job.index, res["retries"]
                )
            for key, episode in res["episodes"]:
                writers[key].write(episode)
                counts[key][f"{episode.kind}/{episode.task}"] += 1
                steps[key] += len(episode)
                if key == "failures":
                    modes[episode.meta["failure_mode"]] += 1
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - start
    manifest = _manifest(cfg, counts, steps, stats, retries, modes, seconds, workers)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info(
        "dataset %s: %s episodes, %s steps, %.1f s, %d retries (%s)",
        out,
        {k: sum(v.values()) for k, v in counts.items()},
        dict(steps),
        seconds,
        sum(retries.values()),
        dict(retries) or "none",
    )
    return out


def _manifest(cfg, counts, steps, stats, retries, modes, seconds, workers) -> dict[str, Any]:
    expert: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, Any]] = {}
    for key, value in sorted(stats.items()):
        task, what = key.rsplit("/", 1)
        if task.startswith("failure_"):
            failures.setdefault(task[len("failure_") :], {})[what] = value
        else:
            expert.setdefault(task, {"attempts": 0, "successes": 0})[what] = value
    for entry in expert.values():
        entry["success_rate"] = round(entry["successes"] / entry["attempts"], 4)
    demo_tasks = list(expert.values())
    attempts = sum(v["attempts"] for v in demo_tasks)
    successes = sum(v["successes"] for v in demo_tasks)
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config_hash": data_hash(cfg),
        "preset": cfg.name,
        "seed": cfg.data.seed,
        "episodes": {k: sum(v.values()) for k, v in counts.items()},
        "steps": dict(steps),
        "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "failure_modes": dict(modes),
        "failure_attempts": failures,
        "generation_seconds": round(seconds, 2),
        "workers": workers,
        "expert": {
            "noise": cfg.data.expert_noise,
            "demo_attempts": attempts,
            "demo_successes": successes,
            "demo_success_rate": round(successes / attempts, 4) if attempts else None,
            "retries": dict(retries),
            "per_task": expert,
        },
        "env": to_dict(cfg.env),
        "data": to_dict(cfg.data),
    }
