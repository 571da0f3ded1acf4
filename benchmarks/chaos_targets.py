"""What the chaos run needs from a cluster: its prepared inputs, its readiness, and the PIDs of
the components to kill (checked to belong to this run's Ray session)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.cluster_run import Cluster, robofume

log = logging.getLogger("benchmarks.chaos")


def ensure_prepared(preset: str, source_run: Path, data_dir: Path) -> None:
    """Generate the dataset, fine-tune the reward model and pre-train the policy when missing."""
    from learner.checkpoint import latest_checkpoint

    reward, pretrain = str(source_run / "reward"), str(source_run / "pretrain")
    steps: list[tuple[bool, list[str]]] = [
        (
            (data_dir / "manifest.json").exists(),
            ["generate", "--preset", preset, "--out", str(data_dir)],
        ),
        (
            any((source_run / "reward").glob("model*")),
            ["reward", "finetune", "--preset", preset, "--data", str(data_dir), "--out", reward],
        ),
        (
            latest_checkpoint(source_run / "pretrain" / "checkpoints") is not None,
            ["pretrain", "--preset", preset, "--data", str(data_dir), "--out", pretrain],
        ),
    ]
    for ready, args in steps:
        if ready:
            continue
        log.info("preparing: robofume %s", " ".join(args))
        out = robofume(*args, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"robofume {args[0]} failed:\n{out.stderr[-3000:]}")


def run_config(run_dir: Path) -> Any:
    """The resolved config `robofume up` wrote into the run directory."""
    from robofume.config import load_config

    return load_config(config_path=run_dir / "config.yaml")


def wait_ready(cluster: Cluster, num_actors: int, timeout_s: float) -> None:
    """Until replay, learner and every actor beat and the actors step; raises on a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beats = cluster.sample()
        runner = beats.get("phases") or {}
        if runner.get("state") == "failed":
            raise RuntimeError(f"the phase runner failed: {runner.get('phases')}")
        actors = [beats.get(f"actor_{i}") or {} for i in range(num_actors)]
        stepping = all(a.get("state") == "running" and a.get("steps", 0) > 0 for a in actors)
        if stepping and beats.get("learner") and beats.get("replay"):
            log.info("cluster ready: %d actors stepping, learner and replay beating", num_actors)
            return
        time.sleep(3.0)
    raise TimeoutError(f"the cluster was not ready within {timeout_s:.0f} s")


def session_pids(cfg: Any) -> set[int]:
    """PIDs of this run's Ray head and its workers (no other Ray instance on the machine)."""
    from deploy.cluster import head_processes

    return {p.pid for p in head_processes(cfg.deploy)}


def reward_pid(cfg: Any) -> int | None:
    """The reward replica's Ray worker (``ray::RewardReplica``) in this run's session."""
    import psutil

    found = []
    for pid in session_pids(cfg):
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::RewardReplica"):
            found.append(pid)
    return found[0] if len(found) == 1 else None


def component_pid(cfg: Any, cluster: Cluster, component: str) -> int | None:
    """The live PID of ``component`` (replay and learner: their heartbeat's ``pid``)."""
    if component == "reward":
        return reward_pid(cfg)
    pid = int((cluster.statuses().get(component) or {}).get("pid") or 0)
    return pid if pid in session_pids(cfg) else None


def wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    import psutil

    try:
        psutil.Process(pid).wait(timeout=timeout_s)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        log.warning("pid %d still there %.0f s after SIGKILL", pid, timeout_s)
