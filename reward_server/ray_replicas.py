"""Reward-server replicas placed by Ray: each replica is a Ray actor that serves gRPC itself.

Ray decides where replicas run (``num_gpus = deploy.reward_gpus`` each, so one per GPU on a
GPU cluster; ``num_cpus = reward.replica_cpus``; spread over nodes); clients talk to them
directly over gRPC (no Serve proxy in the data path) with round-robin and health checks.

```python
import ray
ray.init(...)                                   # or connect to the cluster
replicas = launch_replicas("runs/sim-cpu/reward", cfg)          # N = deploy.num_reward_replicas
replicas.addresses        # ["10.0.0.5:8010", "10.0.0.6:8011", ...] -> RewardClient(addresses, cfg)
replicas.info()           # per-replica model version and counters
replicas.stop()           # graceful stop, then the actors are killed
```
Replica i listens on ``deploy.reward_port + i`` (port 0: any free port). With a fixed port a
replica that crashes is restarted by Ray on the same port (``max_restarts``), and the clients'
health checks bring it back into rotation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from robofume.auth import link_token
from robofume.config import ExperimentConfig
from robofume.config.base import from_dict, to_dict
from robofume.config.reward import RewardConfig

log = logging.getLogger(__name__)

WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


RESTARTS_PREFIX = "replica_"
"""``<run_dir>/status/replica_<name>.json``: a replica's restarts in its run."""


def count_restart(run_dir: str, name: str, tb_dir: str = "") -> int:
    """Restarts of replica ``name`` by Ray in its run (0 on a first start, or without a run
    directory to keep the count in); a restart is logged and noted on the replica's
    TensorBoard run."""
    import ray

    if not run_dir:
        return 0
    from robofume.status import read_statuses, write_status

    key = RESTARTS_PREFIX + name
    restarts = 0
    if ray.get_runtime_context().was_current_actor_reconstructed:
        restarts = int(read_statuses(run_dir).get(key, {}).get("restarts", 0)) + 1
        log.warning("reward replica %s restarted by Ray (restart %d)", name, restarts)
        if tb_dir:
            with contextlib.suppress(Exception):  # the note must not stop the replica
                from torch.utils.tensorboard import SummaryWriter

                from robofume import metrics as tags

                with SummaryWriter(tb_dir) as tb:
                    tb.add_scalar(tags.SERVICE_RESTARTS, restarts, restarts)
                    tb.add_text(tags.SERVICE_STATE, f"restarted by Ray ({restarts})", restarts)
    write_status(run_dir, key, {"restarts": restarts})
    return restarts


def on_this_node(
    deploy: dict[str, Any], checkpoint: str, tb_dir: str, run_dir: str
) -> tuple[str, str, str]:
    """The replica's paths on a node away from the head (robofume/node.py): inside the node's
    own run directory, the reward model fetched there; heartbeats and the dashboard relayed
    to the head. On the head: unchanged."""
    from robofume.config import DeployConfig
    from robofume.node import away_from_head, head_address, node_run_dir, sync_reward
    from robofume.telemetry import HeadClient, relay_to_head

    if not away_from_head() or not run_dir:
        return checkpoint, tb_dir, run_dir
    d = from_dict(DeployConfig, deploy, "deploy")
    head, local = Path(run_dir), Path(node_run_dir()).resolve()

    def rebase(path: str) -> str:
        p = Path(path)
        return str(local / p.relative_to(head)) if path and p.is_relative_to(head) else path

    d = dataclasses.replace(d, run_dir=str(local))
    relay_to_head(HeadClient(head_address(d), link_token(d)))
    checkpoint = str(sync_reward(d, Path(rebase(checkpoint))))
    return checkpoint, rebase(tb_dir), str(local)


class RewardReplica:
    """Ray actor body: loads the checkpoint and serves it from a background event loop."""

    def __init__(
        self,
        checkpoint: str,
        reward_cfg: dict[str, Any],
        host: str,
        port: int,
        token: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        device: str = "auto",
        tb_dir: str = "",
        allow_insecure_remote: bool = False,
        name: str = "reward",
        run_dir: str = "",
        deploy: dict[str, Any] | None = None,
    ):
        from robofume.logs import setup_logging

        setup_logging()
        from reward_server.backends import load_reward_model
        from reward_server.server import start_server_thread

        if deploy is not None:
            checkpoint, tb_dir, run_dir = on_this_node(deploy, checkpoint, tb_dir, run_dir)
        cfg = from_dict(RewardConfig, reward_cfg, "reward")
        if cfg.torch_threads > 0:
            import torch

            torch.set_num_threads(cfg.torch_threads)
        self.model = load_reward_model(checkpoint, device=device)
        self.handle = start_server_thread(
            self.model,
            cfg,
            host,
            port,
            token=token,
            tls_cert=tls_cert,
            tls_key=tls_key,
            allow_insecure_remote=allow_insecure_remote,
        )
        advertised = host
        if host in WILDCARD_HOSTS:
            import ray

            advertised = ray.util.get_node_ip_address()
        self.address = f"{advertised}:{self.handle.server.port}"
        self.handle.server.restarts = count_restart(run_dir, name, tb_dir)
        self.telemetry = None
        if tb_dir:
            from reward_server.telemetry import ServerTelemetry

            self.telemetry = ServerTelemetry(self.handle.server, Path(tb_dir))

    def get_address(self) -> str:
        return self.address

    def info(self) -> dict[str, Any]:
        srv = self.handle.server
        return {
            "address": self.address,
            "version": self.model.version,
            "requests": srv.requests,
            "frames": srv.batcher.frames,
            "batches": srv.batcher.batches,
            "largest_batch": srv.batcher.largest_batch,
            "restarts": srv.restarts,
            "started_at": srv.started_at,
            "pid": __import__("os").getpid(),
        }

    def stop(self) -> bool:
        if self.telemetry is not None:
            self.telemetry.close()
        self.handle.stop()
        return True


@dataclasses.dataclass
class ReplicaSet:
    """Handles and gRPC addresses of running replicas."""

    actors: list[Any]
    addresses: list[str]

    def info(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        import ray

        return ray.get([a.info.remote() for a in self.actors], timeout=timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving (graceful) and kill the actors; safe to call twice."""
        import ray

        refs = []
        for actor in self.actors:
            try:
                refs.append(actor.stop.remote())
            except Exception:  # an actor that is already gone
                continue
        for ref in refs:
            try:
                ray.get(ref, timeout=timeout)
            except Exception as err:  # a dead actor: killed below anyway
                log.debug("reward replica did not stop cleanly: %s", err)
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)
        self.actors = []


def launch_replicas(
    checkpoint: str | Path,
    cfg: ExperimentConfig,
    num_replicas: int | None = None,
    port: int | None = None,
    host: str | None = None,
    max_restarts: int | None = None,
    timeout: float = 300.0,
) -> ReplicaSet:
    """Start ``num_replicas`` (default ``deploy.num_reward_replicas``) replicas; wait until each
    serves; return their addresses. Ray must be initialised (``ray.init``) by the caller."""
    import ray

    if not ray.is_initialized():
        raise RuntimeError("launch_replicas needs Ray: call ray.init(...) first")
    n = cfg.deploy.num_reward_replicas if num_replicas is None else num_replicas
    if n < 1:
        raise ValueError(f"need at least one reward replica, got {n}")
    base = cfg.deploy.reward_port if port is None else port
    host = cfg.deploy.bind_host if host is None else host
    gpus = float(cfg.deploy.reward_gpus)
    restarts = (2 if base else 0) if max_restarts is None else max_restarts
    device = "cuda" if gpus > 0 else cfg.reward.device
    checkpoint = str(Path(checkpoint).resolve())
    from robofume.threads import thread_share

    reward_cfg = dataclasses.replace(cfg.reward, torch_threads=thread_share(cfg, "reward"))
    remote = ray.remote(RewardReplica).options(
        num_cpus=cfg.reward.replica_cpus,
        num_gpus=gpus,
        scheduling_strategy="SPREAD",
        max_restarts=restarts,
        max_concurrency=4,
    )
    actors = [
        remote.remote(
            checkpoint,
            to_dict(reward_cfg),
            host,
            base + i if base else 0,
            link_token(cfg.deploy),
            cfg.deploy.tls_cert,
            cfg.deploy.tls_key,
            device,
            allow_insecure_remote=cfg.deploy.allow_insecure_remote,
            name=f"reward_{i}",
            run_dir=str(Path(cfg.deploy.run_dir).resolve()) if restarts else "",
        )
        for i in range(n)
    ]
    replicas = ReplicaSet(actors, [])
    try:
        replicas.addresses = ray.get([a.get_address.remote() for a in actors], timeout=timeout)
    except Exception:
        replicas.stop(timeout=10)
        raise
    log.info("reward replicas serving at %s", ", ".join(replicas.addresses))
    return replicas
