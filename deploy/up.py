"""`make up` / `make down`: the cluster, TensorBoard and the phase runner; stopping them again.

``up`` is idempotent: the phase runner (:mod:`deploy.phases`) reuses the dataset, reward
model and pre-trained policy that exist; ``up`` joins a running Ray head, and the runner finds
already-running services by name. It records what it started in ``<run_dir>/up.json`` so
that ``down`` stops exactly that and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from robofume.config import ExperimentConfig, save_config
from robofume.config.base import to_dict
from robofume.run_dir import RunDir

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- layout
def resolve_addresses(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill the reward replica addresses from the replica count (one port each)."""
    d = cfg.deploy
    host = "127.0.0.1" if d.bind_host in ("127.0.0.1", "0.0.0.0", "localhost") else d.bind_host
    addrs = tuple(f"{host}:{d.reward_port + i}" for i in range(d.num_reward_replicas))
    replay = f"{host}:{d.replay_port}"
    return cfg.replace(deploy=dataclasses.replace(d, reward_addresses=addrs, replay_address=replay))


# ----------------------------------------------------------------------------- prepare
def dataset_ready(cfg: ExperimentConfig) -> bool:
    return (Path(cfg.data.dir) / "manifest.json").exists()


def reward_ready(paths: RunDir) -> bool:
    return any(paths.reward.glob("model*")) if paths.reward.exists() else False


def pretrain_ready(paths: RunDir) -> bool:
    ckpts = paths.pretrain / "checkpoints"
    return ckpts.exists() and any(ckpts.glob("ckpt_*.pt"))


def prepare_steps(
    cfg: ExperimentConfig, data: str | None = None
) -> list[tuple[str, bool, list[str]]]:
    """The preparation phases in order: (name, already produced, ``robofume`` arguments).

    The dataset, the fine-tuned reward model and the pre-trained policy: what exists is reused
    (:mod:`deploy.phases` runs the rest). ``data``: where the dataset is on this node
    (default ``data.dir``).
    """
    paths = RunDir.of(cfg)
    conf = str(paths.config)
    data, reward = data or cfg.data.dir, str(paths.reward)
    return [
        ("generate", dataset_ready(cfg), ["generate", "--config_path", conf, "--out", data]),
        (
            "reward",
            reward_ready(paths),
            ["reward", "finetune", "--config_path", conf, "--data", data, "--out", reward],
        ),
        (
            "pretrain",
            pretrain_ready(paths),
            ["pretrain", "--config_path", conf, "--data", data, "--out", str(paths.pretrain)],
        ),
    ]


# ----------------------------------------------------------------------------- state
def load_state(cfg: ExperimentConfig) -> dict:
    path = RunDir.of(cfg).up_state
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(cfg: ExperimentConfig, state: dict) -> None:
    path = RunDir.of(cfg).up_state
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1))


# ----------------------------------------------------------------------------- tensorboard
TENSORBOARD_NICENESS = 10
"""TensorBoard only reads what the services write: it yields to them (reloading image strips
every few seconds costs a core on a small machine)."""


def start_tensorboard(cfg: ExperimentConfig) -> int | None:
    """TensorBoard over the run's log dir, bound to the configured host, at
    :data:`TENSORBOARD_NICENESS`; returns its pid."""
    paths = RunDir.of(cfg)
    paths.tensorboard.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("tensorboard")
    cmd = [str(exe), "--logdir", str(paths.root), "--host", cfg.deploy.bind_host,
           "--port", str(cfg.deploy.tensorboard_port), "--reload_interval", "5"]  # fmt: skip
    return _spawn(cfg, cmd, "tensorboard", cfg.deploy.tensorboard_port, TENSORBOARD_NICENESS)


def start_registry(cfg: ExperimentConfig) -> int | None:
    """The head's registry (``robofume registry``, :mod:`deploy.registry`) with the resolved
    config; returns its pid."""
    cmd = [sys.executable, "-m", "deploy.command", "registry",
           "--config_path", str(RunDir.of(cfg).config)]  # fmt: skip
    return _spawn(cfg, cmd, "registry", cfg.deploy.head_port, 0)


def _spawn(cfg: ExperimentConfig, cmd: list[str], what: str, port: int, nice: int) -> int | None:
    """Start ``cmd`` in its own session, log to ``logs/<what>.log``, wait for ``port``."""
    paths = RunDir.of(cfg)
    paths.logs.mkdir(parents=True, exist_ok=True)
    logfile = paths.logs / f"{what}.log"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
    host = "127.0.0.1" if cfg.deploy.bind_host == "0.0.0.0" else cfg.deploy.bind_host
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-5:]
            log.error("%s exited (%s), see %s:\n%s", what, proc.returncode, logfile,
                      "\n".join(tail))  # fmt: skip
            return None
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((host, port)) == 0:
                return proc.pid
        time.sleep(0.5)
    log.warning("%s is not answering on port %d yet; see %s", what, port, logfile)
    return proc.pid


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_pid(pid: int | None) -> None:
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    log.warning("process group %d did not stop on SIGTERM: killing it", pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def config_dict(cfg: ExperimentConfig) -> dict:
    return to_dict(cfg)


def write_resolved_config(cfg: ExperimentConfig) -> Path:
    path = RunDir.of(cfg).config
    save_config(cfg, path)
    return path
