"""Helpers for whole-system benchmarks: an isolated `robofume up` cluster, heartbeat polling.

Each run gets its own run directory and free ports (its own Ray head, replay, reward replica,
learner and actors), reuses the dataset and the reward model / pre-trained policy of a source
run directory (linked, not copied, and not prepared again), and is always stopped with
`robofume down` with the same overrides, also on failure.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import portpicker

from robofume.status import read_statuses

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


def robofume(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the `robofume` CLI in a subprocess (no progress bars), output captured."""
    env = {**os.environ, "ROBOFUME_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "deploy.command", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def link_prepared(source_run: Path, run_dir: Path, pretrained: Path | None = None) -> Path:
    """Link the source run's reward model and newest (or the given) pre-trained checkpoint."""
    from learner.checkpoint import latest_checkpoint

    reward = (source_run / "reward").resolve()
    ckpt = pretrained or latest_checkpoint(source_run / "pretrain" / "checkpoints")
    if not reward.exists() or ckpt is None:
        raise FileNotFoundError(
            f"{source_run} lacks reward/ or pretrain/checkpoints/ckpt_*.pt: run "
            f"`robofume up --preset sim-cpu` (or pretrain and reward finetune) first"
        )
    (run_dir / "pretrain" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "reward").symlink_to(reward, target_is_directory=True)
    (run_dir / "pretrain" / "checkpoints" / Path(ckpt).name).symlink_to(Path(ckpt).resolve())
    log.info("run %s: reward model %s, pre-trained policy %s", run_dir, reward, ckpt)
    return Path(ckpt)


@dataclass
class Cluster:
    """One isolated `robofume up` cluster; use :func:`running_cluster`."""

    run_dir: Path
    overrides: list[str]
    up_s: float = 0.0
    samples: list[dict] = field(default_factory=list)

    def statuses(self) -> dict[str, dict]:
        return read_statuses(str(self.run_dir))

    def sample(self) -> dict:
        snap = {"t": time.time(), "load": load_average(), **self.statuses()}
        self.samples.append(snap)
        return snap

    def status_json(self) -> dict:
        out = robofume("status", "--json", *self.overrides, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"robofume status failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout)

    def poll(self, seconds: float, every_s: float = 10.0) -> None:
        """Sample the heartbeats every ``every_s`` for ``seconds``; logs a one-line summary."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
            snap = self.sample()
            lr = snap.get("learner") or {}
            steps = sum((v.get("steps") or 0) for k, v in snap.items() if k.startswith("actor_"))
            log.info(
                "t=%4.0fs learner step %s (online %s, %.2f upd/s, utd %s), actor steps %d, "
                "replay %s, load %.1f",
                snap["t"] - self.samples[0]["t"],
                lr.get("step"),
                lr.get("online_updates"),
                lr.get("updates_per_sec") or 0.0,
                lr.get("utd_ratio"),
                steps,
                (snap.get("replay") or {}).get("inserts"),
                snap["load"],
            )


def cluster_overrides(
    preset: str, run_dir: Path, data_dir: str, extra: list[str] | None = None
) -> list[str]:
    """--preset, run/data dirs and free ports for every service (actors use control_port + i)."""
    ports = [portpicker.pick_unused_port() for _ in range(5)]
    control = portpicker.pick_unused_port()
    return [
        "--preset",
        preset,
        "--deploy.run_dir",
        str(run_dir),
        "--data.dir",
        data_dir,
        "--deploy.ray_port",
        str(ports[0]),
        "--deploy.dashboard_port",
        str(ports[1]),
        "--deploy.replay_port",
        str(ports[2]),
        "--deploy.reward_port",
        str(ports[3]),
        "--deploy.tensorboard_port",
        str(ports[4]),
        "--deploy.control_port",
        str(control),
        *(extra or []),
    ]


@contextmanager
def running_cluster(run_dir: Path, overrides: list[str]) -> Iterator[Cluster]:
    """`robofume up --skip-prepare --no-tensorboard`, yield, then always `robofume down`."""
    cluster = Cluster(run_dir, overrides)
    t0 = time.monotonic()
    up = robofume("up", "--skip-prepare", "--no-tensorboard", *overrides)
    cluster.up_s = time.monotonic() - t0
    try:
        if up.returncode != 0:
            raise RuntimeError(f"robofume up failed:\n{up.stdout}\n{up.stderr[-5000:]}")
        log.info("cluster up in %.0f s (run dir %s)", cluster.up_s, run_dir)
        cluster.sample()
        yield cluster
    finally:
        down = robofume("down", *overrides, timeout=600)
        log.info("robofume down: rc %d", down.returncode)
        if down.returncode != 0:
            log.error("robofume down failed:\n%s", down.stderr[-3000:])
