"""Helpers of the replay and online-learner tests: configs and episodes that encode their origin."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robofume.config import ExperimentConfig, load_config
from robofume.types import Episode

ROOT = Path(__file__).resolve().parents[1]


def replay_config(run_dir: Path, **sections: dict) -> ExperimentConfig:
    """The smoke preset (32 px images) with ``run_dir`` and section overrides; the test plays
    the head, so the deployment's secret exists (as after ``robofume up``)."""
    from robofume.auth import deployment_secret

    overrides: dict = {"deploy": {"run_dir": str(run_dir)}}
    for key, value in sections.items():
        overrides.setdefault(key, {}).update(value)
    cfg = load_config("smoke", overrides=overrides)
    deployment_secret(cfg.deploy, create=True)
    return cfg


def coded_episode(
    cfg: ExperimentConfig, episode_id: int, steps: int, task: str = "vase_forward"
) -> Episode:
    """An episode whose frame t has pixel (0,0) = (episode_id, t, 7) and proprio (id, t, 0, 0).

    Action t is (id, t, -1, 1)/1000, reward t = t/100, the last step is terminal, so every
    field of a sampled transition tells which episode and step it came from.
    """
    s = cfg.env.image_size
    images = np.zeros((steps + 1, s, s, 3), np.uint8)
    images[:, 0, 0, 0] = episode_id
    images[:, 0, 0, 1] = np.arange(steps + 1)
    images[:, 0, 0, 2] = 7
    proprio = np.zeros((steps + 1, cfg.network.proprio_dim), np.float32)
    proprio[:, 0] = episode_id
    proprio[:, 1] = np.arange(steps + 1)
    actions = np.zeros((steps, cfg.env.action_dim), np.float32)
    actions[:, 0] = episode_id / 1000
    actions[:, 1] = np.arange(steps) / 1000
    rewards = (np.arange(steps) / 100).astype(np.float32)
    terminals = np.zeros(steps, bool)
    terminals[-1] = True
    mc = np.cumsum(rewards[::-1])[::-1].astype(np.float32)
    return Episode(
        images=images,
        proprio=proprio,
        actions=actions,
        rewards=rewards,
        terminals=terminals,
        success=terminals.copy(),
        task=task,
        language="put the vase in the correct bin",
        kind="online",
        mc_returns=mc,
        labels=np.linspace(0, 1, steps).astype(np.float32),
        meta={"episode_id": episode_id},
    )


def start_server_process(port: int, run_dir: Path, *overrides: str) -> subprocess.Popen:
    """``robofume replay serve`` on ``port`` in a child process; returns once it serves its
    own marker.

    A restarted server answers before it has written its new epoch: for a moment its marker is
    the restored one (``in_progress``, the old epoch), and an actor writing then is told of the
    restart only by its next read, so it delivers that write twice (the copy is dropped by
    episode id). Tests that count copies wait for the server's own marker.
    """
    import reverb

    from robofume.replay_client.marker import read_marker

    cmd = [sys.executable, "-m", "deploy.command", "replay", "serve", "--preset", "smoke"]
    cmd += ["--port", str(port), "--deploy.run_dir", str(run_dir), *overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"replay_server_{port}.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    client = reverb.Client(f"127.0.0.1:{port}")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"replay server exited: {log_path.read_text()[-2000:]}")
        try:
            if not read_marker(client, 1.0).in_progress:
                return proc
        except Exception:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("replay server did not start within 90 s")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (the server checkpoints on the way out), then wait."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        proc.wait()
