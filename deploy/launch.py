"""Starting and stopping the cluster's services (Ray must be connected)."""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from pathlib import Path
from typing import Any

import ray

from deploy import services
from deploy.up import config_dict
from robofume.auth import link_token
from robofume.config import ExperimentConfig
from robofume.run_dir import RunDir

log = logging.getLogger(__name__)


def wait_port(address: str, timeout_s: float, what: str) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not start listening on {address} within {timeout_s:.0f} s")


def _check_alive(handle: Any, name: str, timeout_s: float = 60.0) -> None:
    state = ray.get(handle.state.remote(), timeout=timeout_s)
    if state["error"]:
        raise RuntimeError(f"{name} failed to start:\n{state['error']}")


WILDCARD = ("", "0.0.0.0", "::", "[::]")
HEAD_RESOURCE = "node:__internal_head__"
"""Ray's own resource of the head node."""


def start_replay(cfg: ExperimentConfig) -> str:
    """The replay server, on the head unless ``deploy.replay_resources`` says otherwise (its
    checkpoints stay on its node's disk); returns where it really listens."""
    resources = cfg.deploy.replay_resources or {HEAD_RESOURCE: 0.001}
    handle = services.launch("replay", "deploy.entry:serve_replay", config_dict(cfg),
                             resources=resources)  # fmt: skip
    _check_alive(handle, "replay", cfg.deploy.start_timeout_s)
    d = cfg.deploy
    host = d.bind_host
    if host in WILDCARD:  # every interface: the one other machines reach it by
        host = ray.get(handle.node_ip.remote(), timeout=60)
    address = f"{host}:{d.replay_port}"
    wait_port(address, d.start_timeout_s, "replay server")
    log.info("replay: serving at %s", address)
    return address


def with_addresses(cfg: ExperimentConfig, replay: str, reward: list[str]) -> ExperimentConfig:
    """``cfg`` with where replay and the reward replicas really listen, told to the head's
    registry too (the robot PC and `status` discover them there)."""
    from robofume.node import head_address
    from robofume.telemetry import HeadClient, HeadUnavailable

    cfg = cfg.replace(deploy=dataclasses.replace(
        cfg.deploy, replay_address=replay, reward_addresses=tuple(reward)))  # fmt: skip
    client = HeadClient(head_address(cfg.deploy), link_token(cfg.deploy))
    try:
        client.advertise("replay", replay)
        for i, address in enumerate(reward):
            client.advertise(f"reward_{i}", address)
    except HeadUnavailable as err:  # no registry (a bare `robofume` run): the log says where
        log.warning("could not tell the head where the services listen: %s", err)
    return cfg


def start_reward(cfg: ExperimentConfig) -> list[str]:
    """Named, detached reward replicas (one per GPU when GPUs are configured)."""
    from reward_server.ray_replicas import RewardReplica
    from robofume.config.base import to_dict
    from robofume.threads import thread_share

    reward_cfg = dataclasses.replace(cfg.reward, torch_threads=thread_share(cfg, "reward"))
    checkpoint = str(RunDir.of(cfg).reward.resolve())
    remote = ray.remote(RewardReplica)
    handles = []
    for i in range(cfg.deploy.num_reward_replicas):
        handles.append(
            remote.options(
                name=f"reward_{i}",
                lifetime="detached",
                get_if_exists=True,
                num_cpus=cfg.reward.replica_cpus,
                num_gpus=cfg.deploy.reward_gpus,
                resources=dict(cfg.deploy.reward_resources),
                scheduling_strategy="SPREAD",
                max_restarts=3,
                max_concurrency=4,
            ).remote(
                checkpoint,
                to_dict(reward_cfg),
                cfg.deploy.bind_host,
                cfg.deploy.reward_port + i,
                link_token(cfg.deploy),
                cfg.deploy.tls_cert,
                cfg.deploy.tls_key,
                "cuda" if cfg.deploy.reward_gpus > 0 else cfg.reward.device,
                str(RunDir.of(cfg).tb(f"reward_{i}").resolve()),  # the component, not its port
                allow_insecure_remote=cfg.deploy.allow_insecure_remote,
                name=f"reward_{i}",
                run_dir=str(Path(cfg.deploy.run_dir).resolve()),
                deploy=to_dict(cfg.deploy),
            )
        )
    addresses = ray.get(
        [h.get_address.remote() for h in handles], timeout=cfg.deploy.start_timeout_s
    )
    log.info("reward: %d replica(s) serving at %s", len(addresses), ", ".join(addresses))
    return addresses


def start_learner(cfg: ExperimentConfig) -> Any:
    handle = services.launch(
        "learner",
        "deploy.entry:run_learner",
        config_dict(cfg),
        num_gpus=cfg.deploy.learner_gpus,
        role="learner",
        resources=cfg.deploy.learner_resources,
    )
    _check_alive(handle, "learner")
    log.info("learner: started (run dir %s)", RunDir.of(cfg).online)
    return handle


def start_actors(cfg: ExperimentConfig) -> list[Any]:
    handles = []
    for i in range(cfg.deploy.num_actors):
        handles.append(
            services.launch(
                f"actor_{i}",
                "deploy.entry:run_sim_actor",
                config_dict(cfg),
                kwargs={"actor_id": i},
                role="actor",
            )
        )
    for i, handle in enumerate(handles):
        _check_alive(handle, f"actor_{i}")
    if handles:
        log.info("actors: %d simulated actor(s) running", len(handles))
    return handles


def start_evaluator(cfg: ExperimentConfig) -> Any | None:
    """The online evaluator, in simulation when ``deploy.evaluator_every_s`` > 0."""
    d = cfg.deploy
    if cfg.env.kind != "sim" or (d.evaluator_every_s <= 0 and d.evaluator_every_steps <= 0):
        return None
    handle = services.launch("evaluator", "deploy.entry:run_evaluator", config_dict(cfg))
    _check_alive(handle, "evaluator")
    every = (f"{d.evaluator_every_steps} env steps" if d.evaluator_every_steps > 0
             else f"{d.evaluator_every_s:.0f} s")  # fmt: skip
    log.info("evaluator: every %s, %d episode(s) per forward task", every, d.evaluator_episodes)
    return handle


def service_names(cfg: ExperimentConfig, state: dict) -> list[str]:
    """Stop order: actors first (they flush episodes into replay), replay last."""
    actors = [f"actor_{i}" for i in range(max(cfg.deploy.num_actors, state.get("num_actors", 0)))]
    reward = [
        f"reward_{i}"
        for i in range(max(cfg.deploy.num_reward_replicas, state.get("num_reward_replicas", 0)))
    ]
    return [*actors, "evaluator", "learner", *reward, "replay"]


def stop_services(names: list[str], timeout_s: float = 60.0) -> list[str]:
    stopped = []
    for name in names:
        handle = services.find(name)
        if handle is None:
            continue
        try:
            ray.get(handle.stop.remote(), timeout=timeout_s)
        except Exception as err:  # already dead or stuck: killed below anyway
            log.warning("%s did not stop cleanly: %s", name, str(err).splitlines()[0])
        ray.kill(handle, no_restart=True)
        stopped.append(name)
    return stopped


def service_states(names: list[str]) -> dict[str, dict]:
    out = {}
    for name in names:
        handle = services.find(name)
        if handle is None:
            continue
        try:
            method = handle.state if not name.startswith("reward_") else handle.info
            out[name] = {"alive": True, **ray.get(method.remote(), timeout=10)}
        except Exception as err:
            out[name] = {"alive": False, "error": str(err).splitlines()[0]}
    return out
