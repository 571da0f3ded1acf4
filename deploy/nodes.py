"""Worker nodes on this machine, each as another machine would be: for tests and benchmarks.

A worker node is a `ray start --address <head>` with its own ``HOME`` and its own run
directory (``ROBOFUME_RUN_DIR``), holding only what the README says to copy from the head: the
deployment secret and the Ray token. Removing it kills every process of that node at once,
as a machine that goes away would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from robofume.config import DeployConfig
from robofume.node import NODE_RUN_DIR_ENV
from robofume.run_dir import RunDir


@dataclass(frozen=True)
class WorkerNode:
    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run"


def _ray_bin() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def join_node(
    head: DeployConfig, root: Path, resources: dict[str, float], num_cpus: int = 1
) -> WorkerNode:
    """Start a worker node under ``root`` that joins the Ray head of ``head``."""
    from deploy.cluster import WORKER_ENV, head_address
    from robofume.auth import secret_path
    from robofume.ray_auth import token_path

    node = WorkerNode(root)
    secret = RunDir.at(node.run_dir).secret
    secret.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(secret_path(head), secret)  # what the README copies
    token = root / "ray_token"
    shutil.copy(token_path(head), token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(WORKER_ENV, HOME=str(root / "home"), RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token), RAY_worker_niceness="0")  # fmt: skip
    env[NODE_RUN_DIR_ENV] = str(node.run_dir)
    (root / "home").mkdir(parents=True, exist_ok=True)
    cmd = [_ray_bin(), "start", f"--address={head_address(head)}",
           "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
           f"--resources={json.dumps(resources)}", "--disable-usage-stats"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker node {root} did not join:\n{proc.stdout}\n{proc.stderr}")
    return node


def node_processes(node: WorkerNode) -> list:
    """Every process of ``node`` (they all carry its ``ROBOFUME_RUN_DIR``)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(NODE_RUN_DIR_ENV) == str(node.run_dir):
                found.append(proc)
    return found


def remove_node(node: WorkerNode) -> int:
    """The machine goes away: SIGKILL to every process of the node; returns how many."""
    import psutil

    procs = node_processes(node)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=20)
    return len(procs)
