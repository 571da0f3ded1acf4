"""The local Ray head: start it when none runs, connect to it, stop only what we started."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from robofume.config import DeployConfig

log = logging.getLogger(__name__)

NAMESPACE = "robofume"

# Environment every Ray worker of ours gets: headless rendering, offline model loading,
# one math thread per process (the cluster shares cores between components).
WORKER_ENV = {
    "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "RAY_USAGE_STATS_ENABLED": "0",
    "ROBOFUME_NO_PROGRESS": "1",
}


def use_token_auth(cfg: DeployConfig) -> dict[str, str]:
    """Token authentication with the run's own token for every Ray link we open.

    The token lives in the run directory (:mod:`robofume.ray_auth`), never in ``~/.ray``:
    the head, its workers and every driver get it explicitly, so `up`, `down` and `status`
    work the same on a machine that has never run Ray and on one with a token at home.
    Returns the variables to hand to `ray start`; this process's Ray uses them already.
    """
    from robofume.ray_auth import use_run_token

    return use_run_token(cfg)


def _ray_bin() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def head_ip(cfg: DeployConfig) -> str:
    """The address the Ray head advertises: loopback unless ``deploy.bind_host`` opens it to
    other machines (a named address; for ``0.0.0.0`` the one this machine reaches out by)."""
    if cfg.bind_host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    if cfg.bind_host in ("", "0.0.0.0", "::"):
        import ray

        return ray.util.get_node_ip_address()
    return cfg.bind_host


def head_address(cfg: DeployConfig) -> str:
    if cfg.ray_address not in ("", "auto"):
        return cfg.ray_address
    return f"{head_ip(cfg)}:{cfg.ray_port}"


def head_running(cfg: DeployConfig) -> bool:
    """Whether a Ray GCS answers at the configured address."""
    import socket

    host, port = head_address(cfg).rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, int(port))) == 0


def start_head(cfg: DeployConfig) -> bool:
    """Start a local head on loopback unless one runs already; True when we started it."""
    if head_running(cfg):
        log.info("ray: joining the running head at %s", head_address(cfg))
        return False
    if cfg.ray_address not in ("", "auto"):
        raise RuntimeError(f"no Ray head answers at {cfg.ray_address}; start the cluster first")
    cpus = cfg.ray_num_cpus or os.cpu_count() or 2
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        f"--port={cfg.ray_port}",
        f"--node-ip-address={head_ip(cfg)}",
        f"--num-cpus={cpus}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={cfg.dashboard_port}",
        "--disable-usage-stats",
    ]
    log.info("ray: starting a local head (%d CPUs) on %s", cpus, head_address(cfg))
    auth = use_token_auth(cfg)  # first: it also drops an inherited RAY_AUTH_TOKEN
    env = {**os.environ, **WORKER_ENV, **auth, "RAY_worker_niceness": str(cfg.worker_niceness)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        stop_head(cfg)  # what a failed `ray start` left running (GCS, raylet, dashboard)
        raise RuntimeError(f"`ray start` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return True


def connect(cfg: DeployConfig) -> None:
    """ray.init against the cluster (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    use_token_auth(cfg)
    ray.init(
        address=head_address(cfg),
        namespace=NAMESPACE,
        logging_level=logging.WARNING,
        log_to_driver=False,
        runtime_env={"env_vars": WORKER_ENV},
    )


def head_processes(cfg: DeployConfig) -> list:
    """The processes of the local Ray head on ``cfg.ray_port``, and nothing else.

    The head's GCS server names its port and its session; every process of that Ray
    instance (raylet, dashboard, monitors, workers) names the session, and the agents that
    rename themselves are children of the raylet. Other Ray instances on the machine (other
    runs, tests) have other sessions and are left alone, unlike `ray stop`.
    """
    import psutil

    port = head_address(cfg).rsplit(":", 1)[1]
    session = ""
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if f"--gcs_server_port={port}" in args:
            names = [a.split("=", 1)[1] for a in args if a.startswith("--session-name=")]
            session = names[0] if names else ""
            break
    if not session:
        return []
    flags = ("--address=", "--gcs-address=")  # the Ray client server names only the GCS

    def ours(arg: str) -> bool:
        return session in arg or (arg.startswith(flags) and arg.endswith(f":{port}"))

    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if any(ours(a) for a in proc.info["cmdline"] or []):
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    found[p.pid] = p
            except psutil.NoSuchProcess:
                continue
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_head(cfg: DeployConfig, timeout_s: float = 15.0) -> int:
    """Stop the local head `up` started (SIGTERM, then SIGKILL); returns processes stopped."""
    import psutil

    procs = head_processes(cfg)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5.0)
    return len(procs)
